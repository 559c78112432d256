/**
 * Our WireGuard device running on a TUN and a bind, with its key set and its `wg` configuration
 * socket served: what the node role's userspace backend and the mesh's userspace plane both
 * start. A failure on the way closes what was started.
 */
import type { Bind } from "../../shared/wireguard/bind.ts";
import { Device } from "../../shared/wireguard/device.ts";
import type { Tun } from "../../shared/wireguard/tun.ts";
import { handleUapiRequest } from "../../shared/wireguard/uapi.ts";
import { nodeClock } from "./clock-node.ts";
import { createNodeCryptoProvider } from "./crypto-node.ts";
import { serveUapi } from "./uapi-socket.ts";

export interface UserspaceDevice {
  readonly device: Device;
  /** Stops the configuration socket, then the device. */
  close(): Promise<void>;
}

export async function startUserspaceDevice(options: {
  readonly tun: Tun;
  readonly bind: Bind;
  readonly privateKey: Uint8Array;
  readonly log: (message: string) => void;
}): Promise<UserspaceDevice> {
  const device = new Device({
    tun: options.tun,
    bind: options.bind,
    crypto: createNodeCryptoProvider(),
    clock: nodeClock,
    log: options.log,
  });
  let uapi: Awaited<ReturnType<typeof serveUapi>>;
  try {
    device.setPrivateKey(options.privateKey);
    await device.start();
    uapi = await serveUapi(options.tun.name, (request) => handleUapiRequest(device, request));
  } catch (error) {
    await device.close();
    throw error;
  }
  const served = uapi;
  return {
    device,
    async close() {
      await served.close();
      await device.close();
    },
  };
}

import { spawn } from "node:child_process";
import { Device } from "../../shared/wireguard/device.ts";
import { handleUapiRequest } from "../../shared/wireguard/uapi.ts";
import { createUdpBind } from "../bind/udp.ts";
import { selfArguments } from "../executable.ts";
import { createLogger, type Logger } from "../log.ts";
import { watchLink } from "../net/link-watch.ts";
import { DEFAULT_MTU, openLinuxTun } from "../tun/tun-linux.ts";
import { nodeClock } from "../wireguard/clock-node.ts";
import { createNodeCryptoProvider } from "../wireguard/crypto-node.ts";
import { serveUapi, uapiSocketPath } from "../wireguard/uapi-socket.ts";
import type { Command } from "./command.ts";

/**
 * `siderolink-sidecar wireguard [--foreground] IFACE`: a userspace WireGuard interface that
 * behaves like `wireguard-go IFACE`. It creates the TUN interface, serves the configuration
 * socket for `wg`, and runs until SIGINT/SIGTERM or until the interface is deleted; then it
 * removes its socket (and, by closing the TUN, the interface).
 *
 * Without --foreground it starts itself again detached, waits until that child reports the
 * interface and socket ready, and exits 0 (wireguard-go's daemon mode). The child's output is
 * discarded unless LOG_LEVEL is set, as with wireguard-go.
 */

/** Set in the detached child; its value is the parent's pid, for the log. */
const DAEMON_CHILD_VARIABLE = "SIDEROLINK_WIREGUARD_DAEMON";
/** How long the parent waits for the detached child to come up. */
const DAEMON_START_TIMEOUT_MS = 15_000;
/** Peers' handshake times are checked this often to log completed handshakes. */
const HANDSHAKE_LOG_INTERVAL_MS = 1000;

const help = `Usage: siderolink-sidecar wireguard [--foreground] IFACE

Runs a userspace WireGuard interface named IFACE (1-15 characters), like wireguard-go:
it creates the TUN interface (MTU ${DEFAULT_MTU}) and serves ${uapiSocketPath("IFACE")} so that
the stock tools configure it, for example:

  siderolink-sidecar wireguard wg0
  wg set wg0 private-key ./key listen-port 51820 peer PUBKEY endpoint 192.0.2.1:51820 allowed-ips 10.0.0.2/32
  ip address add 10.0.0.1/24 dev wg0 && ip link set wg0 up
  wg show wg0

It runs until SIGINT or SIGTERM, or until the interface is deleted (ip link del wg0).

Options:
  -f, --foreground  stay in the foreground and log to standard error (one line per event)
  -h, --help        show this text

Environment:
  LOG_LEVEL=debug   also log configuration requests and dropped handshakes; in daemon mode,
                    any LOG_LEVEL keeps the daemon's output on this terminal
  LOG_FORMAT=json   log JSON lines, as join and serve do, instead of one text line per event
`;

export const wireguardCommand: Command = {
  summary: "run a userspace WireGuard interface configured with wg (like wireguard-go)",
  help,
  async run(args) {
    let foreground = false;
    const names: string[] = [];
    for (const arg of args) {
      if (arg === "-f" || arg === "--foreground") foreground = true;
      else if (arg.startsWith("-")) throw new Error(`unknown option ${arg}; see --help`);
      else names.push(arg);
    }
    if (names.length !== 1)
      throw new Error(`expected one interface name, got ${names.length}; see --help`);
    const [iface] = names;
    if (!/^[A-Za-z0-9_.=+-]{1,15}$/.test(iface)) {
      throw new Error(`invalid interface name "${iface}": use 1-15 letters, digits or _.=+-`);
    }
    if (!foreground && process.env[DAEMON_CHILD_VARIABLE] === undefined) {
      return daemonize(iface);
    }
    return runForeground(iface, createLogger(iface, { format: "text" }));
  },
};

async function runForeground(iface: string, log: Logger): Promise<number> {
  const tun = openLinuxTun({ name: iface, mtu: DEFAULT_MTU });
  log.info(`created TUN interface ${tun.name} with MTU ${tun.mtu}`);
  const bind = createUdpBind({ port: 0 });
  const device = new Device({
    tun,
    bind,
    crypto: createNodeCryptoProvider(),
    clock: nodeClock,
    openBind: (port) => createUdpBind({ port }),
    log: log.debug,
  });
  let uapi: Awaited<ReturnType<typeof serveUapi>> | undefined;
  const link = watchLink(tun.name, (event) => {
    if (event.kind === "deleted") return;
    if (event.mtu !== tun.mtu) log.info(`MTU changed from ${tun.mtu} to ${tun.refreshMtu()}`);
  });
  try {
    await device.start();
    log.info(`listening for WireGuard on UDP port ${device.listenPort}`);
    uapi = await serveUapi(tun.name, (request) => {
      log.debug(`configuration request: ${request.split("\n", 1)[0]}`);
      return handleUapiRequest(device, request, (message) => log.info(`configuration: ${message}`));
    });
    log.info(`serving configuration on ${uapi.path}`);
    await link.ready;
  } catch (error) {
    link.close();
    await uapi?.close();
    await device.close();
    throw error;
  }
  process.send?.({ ready: tun.name });
  process.channel?.unref();

  const handshakes = new Map<string, number>();
  let listenPort = device.listenPort;
  const monitor = setInterval(() => {
    for (const peer of device.peers()) {
      const key = Buffer.from(peer.publicKey).toString("base64");
      if (peer.lastHandshake > (handshakes.get(key) ?? 0)) {
        log.info(`handshake completed with peer ${key} at ${peer.endpoint ?? "unknown endpoint"}`);
      }
      handshakes.set(key, peer.lastHandshake);
    }
    if (device.listenPort !== listenPort) {
      listenPort = device.listenPort;
      log.info(`listening for WireGuard on UDP port ${listenPort}`);
    }
  }, HANDSHAKE_LOG_INTERVAL_MS);

  const reason = await new Promise<string>((resolve) => {
    const onSignal = (signal: NodeJS.Signals): void => resolve(`received ${signal}`);
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);
    void tun.closed.then(() => resolve(`interface ${tun.name} was deleted`));
  });
  log.info(`shutting down: ${reason}`);
  clearInterval(monitor);
  link.close();
  await uapi.close();
  log.info(`removed ${uapi.path}`);
  await device.close();
  log.info("device closed");
  return 0;
}

/** Starts this command again detached, in the foreground mode, and waits for it to be ready. */
async function daemonize(iface: string): Promise<number> {
  const keepOutput = process.env.LOG_LEVEL !== undefined;
  const child = spawn(process.execPath, [...selfArguments(), "wireguard", "--foreground", iface], {
    detached: true,
    stdio: ["ignore", keepOutput ? "inherit" : "ignore", keepOutput ? "inherit" : "ignore", "ipc"],
    env: { ...process.env, [DAEMON_CHILD_VARIABLE]: String(process.pid) },
  });
  const outcome = await new Promise<string | null>((resolve) => {
    const timer = setTimeout(
      () => resolve(`no ready report within ${DAEMON_START_TIMEOUT_MS} ms`),
      DAEMON_START_TIMEOUT_MS,
    );
    child.once("message", () => {
      clearTimeout(timer);
      resolve(null);
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      resolve(`exited with ${signal ?? `status ${code}`}`);
    });
  });
  if (outcome !== null) {
    child.kill();
    throw new Error(
      `the WireGuard daemon for ${iface} did not start: ${outcome}; ` +
        `run with --foreground to see why`,
    );
  }
  child.disconnect();
  child.unref();
  return 0;
}

/**
 * The cross-platform userspace configuration protocol (https://www.wireguard.com/xplatform/),
 * which `wg` speaks over /var/run/wireguard/<iface>.sock. A request is one operation line and
 * `key=value` lines, ended by a blank line:
 *
 *   get=1\n\n                 -> device and peer lines, then errno=0\n\n
 *   set=1\nkey=value\n...\n\n -> errno=0\n\n, or errno=<negative Linux errno>\n\n
 *
 * Set keys before the first `public_key` configure the device (private_key, listen_port,
 * fwmark, replace_peers); each `public_key` starts a peer section (remove, update_only,
 * preshared_key, endpoint, persistent_keepalive_interval, replace_allowed_ips, allowed_ip,
 * protocol_version). Error codes are wireguard-go's: -EINVAL for a bad key or value, -EPROTO
 * for a line without '=', -EADDRINUSE when the port cannot be bound.
 */
import { formatPrefix, parseNetworkPrefix } from "../net/ip.ts";
import type { Endpoint } from "./bind.ts";
import type { Device, PeerConfig } from "./device.ts";
import { fromHex, toHex } from "./hex.ts";

const EINVAL = 22;
const EPROTO = 71;
const EADDRINUSE = 98;

class UapiError extends Error {
  readonly errno: number;
  constructor(errno: number, message: string) {
    super(message);
    this.errno = errno;
  }
}

/** Length of the first complete request in `buffered` (through its blank line), or 0. */
export function uapiRequestLength(buffered: string): number {
  const end = buffered.indexOf("\n\n");
  return end < 0 ? 0 : end + 2;
}

/**
 * Executes one request (`get=1\n\n` or `set=1\n...\n\n`) against `device` and returns the
 * response text. Errors are reported in the response, never thrown; `log` hears why.
 */
export async function handleUapiRequest(
  device: Device,
  request: string,
  log: (message: string) => void = () => {},
): Promise<string> {
  const lines = request.split("\n");
  while (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  try {
    if (lines[0] === "get=1" && lines.length === 1) return `${uapiGet(device)}errno=0\n\n`;
    if (lines[0] === "set=1") {
      await uapiSet(device, lines.slice(1));
      return "errno=0\n\n";
    }
    throw new UapiError(EINVAL, `invalid UAPI operation ${JSON.stringify(lines[0] ?? "")}`);
  } catch (error) {
    const errno = error instanceof UapiError ? error.errno : EINVAL;
    log(error instanceof Error ? error.message : String(error));
    return `errno=${-errno}\n\n`;
  }
}

/** The device and peer lines of a `get=1` response, without the final errno line. */
export function uapiGet(device: Device): string {
  const out: string[] = [];
  const privateKey = device.privateKey;
  if (privateKey !== null) out.push(`private_key=${toHex(privateKey)}`);
  if (device.listenPort !== 0) out.push(`listen_port=${device.listenPort}`);
  if (device.fwmark !== 0) out.push(`fwmark=${device.fwmark}`);
  for (const peer of device.peers()) {
    const seconds = Math.floor(peer.lastHandshake / 1000);
    const nanoseconds = Math.round((peer.lastHandshake - seconds * 1000) * 1e6);
    out.push(
      `public_key=${toHex(peer.publicKey)}`,
      `preshared_key=${toHex(peer.handshake.presharedKey)}`,
      "protocol_version=1",
    );
    if (peer.endpoint !== null) out.push(`endpoint=${peer.endpoint.toString()}`);
    out.push(
      `last_handshake_time_sec=${seconds}`,
      `last_handshake_time_nsec=${nanoseconds}`,
      `tx_bytes=${peer.txBytes}`,
      `rx_bytes=${peer.rxBytes}`,
      `persistent_keepalive_interval=${peer.persistentKeepaliveInterval}`,
    );
    for (const prefix of device.allowedIps.entriesFor(peer)) {
      out.push(`allowed_ip=${formatPrefix(prefix)}`);
    }
  }
  return out.map((line) => `${line}\n`).join("");
}

interface PeerSection {
  config: PeerConfig & { allowedIps: string[] };
  remove: boolean;
  updateOnly: boolean;
}

function parseUnsigned(value: string, max: number, key: string): number {
  const number = Number(value);
  if (!/^\d+$/.test(value) || number > max) {
    throw new UapiError(EINVAL, `invalid ${key} ${JSON.stringify(value)}: expected 0-${max}`);
  }
  return number;
}

function parseKey(value: string, key: string): Uint8Array {
  try {
    return fromHex(value, 32, key);
  } catch (error) {
    throw new UapiError(EINVAL, (error as Error).message);
  }
}

function requireTrue(value: string, key: string): void {
  if (value !== "true")
    throw new UapiError(EINVAL, `invalid ${key} ${JSON.stringify(value)}: only "true"`);
}

async function uapiSet(device: Device, lines: readonly string[]): Promise<void> {
  let section: PeerSection | null = null;
  for (const line of lines) {
    const equals = line.indexOf("=");
    if (equals < 0) throw new UapiError(EPROTO, `failed to parse line ${JSON.stringify(line)}`);
    const key = line.slice(0, equals);
    const value = line.slice(equals + 1);
    if (key === "public_key") {
      if (section !== null) applyPeer(device, section);
      section = {
        config: { publicKey: parseKey(value, key), allowedIps: [] },
        remove: false,
        updateOnly: false,
      };
      continue;
    }
    if (section === null) await setDeviceKey(device, key, value);
    else setPeerKey(device, section, key, value);
  }
  if (section !== null) applyPeer(device, section);
}

async function setDeviceKey(device: Device, key: string, value: string): Promise<void> {
  switch (key) {
    case "private_key":
      device.setPrivateKey(parseKey(value, key));
      return;
    case "listen_port": {
      const port = parseUnsigned(value, 65535, key);
      if (port !== 0 && port === device.listenPort) return;
      try {
        await device.setListenPort(port);
      } catch (error) {
        throw new UapiError(
          EADDRINUSE,
          `failed to set listen_port ${port}: ${(error as Error).message}`,
        );
      }
      return;
    }
    case "fwmark":
      device.fwmark = parseUnsigned(value, 0xffff_ffff, key);
      return;
    case "replace_peers":
      requireTrue(value, key);
      device.removeAllPeers();
      return;
    default:
      throw new UapiError(EINVAL, `invalid UAPI device key ${JSON.stringify(key)}`);
  }
}

function setPeerKey(device: Device, section: PeerSection, key: string, value: string): void {
  const config = section.config;
  switch (key) {
    case "remove":
      requireTrue(value, key);
      section.remove = true;
      return;
    case "update_only":
      requireTrue(value, key);
      section.updateOnly = true;
      return;
    case "preshared_key":
      config.presharedKey = parseKey(value, key);
      return;
    case "endpoint": {
      let endpoint: Endpoint;
      try {
        endpoint = device.parseEndpoint(value);
      } catch (error) {
        throw new UapiError(EINVAL, `failed to set endpoint ${value}: ${(error as Error).message}`);
      }
      config.endpoint = endpoint;
      return;
    }
    case "persistent_keepalive_interval":
      config.persistentKeepaliveInterval = parseUnsigned(value, 65535, key);
      return;
    case "replace_allowed_ips":
      requireTrue(value, key);
      config.replaceAllowedIps = true;
      config.allowedIps.length = 0;
      return;
    case "allowed_ip":
      try {
        parseNetworkPrefix(value, "allowed_ip");
      } catch (error) {
        throw new UapiError(EINVAL, `failed to set allowed ip: ${(error as Error).message}`);
      }
      config.allowedIps.push(value);
      return;
    case "protocol_version":
      if (value !== "1")
        throw new UapiError(EINVAL, `invalid protocol version ${JSON.stringify(value)}`);
      return;
    default:
      throw new UapiError(EINVAL, `invalid UAPI peer key ${JSON.stringify(key)}`);
  }
}

function applyPeer(device: Device, section: PeerSection): void {
  const exists = device.peer(section.config.publicKey) !== undefined;
  if (section.remove) {
    device.removePeer(section.config.publicKey);
    return;
  }
  if (section.updateOnly && !exists) return;
  // setPeer sends the turned-on keepalive itself, after the endpoint is in place.
  device.setPeer(section.config);
}

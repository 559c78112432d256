/**
 * Every setting of the relay that an operator may change, read from text: Worker vars on
 * Cloudflare, environment variables and `siderolink-relay serve` flags on Node. One table
 * (SETTINGS) names each setting three ways and says what it means; the README's limits table
 * lists the same rows (test/relay/config.test.ts keeps them together).
 *
 * Names: the Worker var is `RELAY_<NAME>`, the Node environment variable `SIDEROLINK_RELAY_<NAME>`
 * (as with the operator token), the flag `--<name>` in kebab case.
 *
 * Parsing is strict and early: a value that is not a plain decimal number of the right kind
 * ("45s" for milliseconds) is a ConfigError naming the setting, the value and the form expected.
 */
import { type Prefix, parseNetworkPrefix } from "../../shared/net/ip.ts";
import { SideroLinkError } from "../../shared/siderolink/errors.ts";
import { DEFAULT_HUB_LIMITS, type HubLimits } from "../hub/hub.ts";
import { DEFAULT_RELAY_LIMITS, type RelayLimits } from "./limits.ts";

/** The numeric settings, flat: what SETTINGS reads and the limits objects are built from. */
export interface NumericSettings {
  provisionPerClientBurst: number;
  provisionPerClientPerSecond: number;
  provisionFailuresPerClientBurst: number;
  provisionFailuresPerClientPerSecond: number;
  provisionPerNetworkBurst: number;
  provisionPerNetworkPerSecond: number;
  maxPeersPerNetwork: number;
  maxTunnels: number;
  livenessTimeoutMs: number;
  ackTimeoutMs: number;
  nodeBurst: number;
  nodeDatagramsPerSecond: number;
  nodeQueueDatagrams: number;
  nodeQueueBytes: number;
  uplinkQueueDatagrams: number;
  uplinkQueueBytes: number;
  highWaterBytes: number;
  retryMs: number;
  maxCandidatesPerAddress: number;
  candidateTimeoutMs: number;
}

/** What a relay runs with once its settings are read. */
export interface RelayConfig {
  readonly limits: RelayLimits;
  readonly hubLimits: HubLimits;
  /**
   * Peers whose `X-Forwarded-For` names the client (a reverse proxy in front of a Node relay);
   * empty: the TCP peer is the client. Workers take the client from Cloudflare's edge instead.
   */
  readonly trustedProxies: readonly Prefix[];
}

/** How a value must be written. */
type Form = "integer" | "rate";

export interface NumericSetting {
  readonly key: keyof NumericSettings;
  /** The kebab-case name: `--<name>` on Node, `RELAY_<NAME>` as a Worker var. */
  readonly name: string;
  readonly form: Form;
  /** The smallest value that makes sense. */
  readonly min: number;
  /** What the value limits, for errors and the README. */
  readonly meaning: string;
}

/** The one list setting, kept apart: it is text, not a number, and Node-only. */
export const TRUSTED_PROXIES = "trusted-proxies";

export const SETTINGS: readonly NumericSetting[] = [
  {
    key: "provisionPerClientBurst",
    name: "provision-per-client-burst",
    form: "integer",
    min: 1,
    meaning: "Provision calls with a valid join token one client may make at once",
  },
  {
    key: "provisionPerClientPerSecond",
    name: "provision-per-client-per-second",
    form: "rate",
    min: 0,
    meaning: "valid Provision calls a client regains per second",
  },
  {
    key: "provisionFailuresPerClientBurst",
    name: "provision-failures-per-client-burst",
    form: "integer",
    min: 1,
    meaning: "refused Provision calls (bad token or request) one client may make at once",
  },
  {
    key: "provisionFailuresPerClientPerSecond",
    name: "provision-failures-per-client-per-second",
    form: "rate",
    min: 0,
    meaning: "refused Provision calls a client regains per second",
  },
  {
    key: "provisionPerNetworkBurst",
    name: "provision-per-network-burst",
    form: "integer",
    min: 1,
    meaning: "Provision calls with a valid join token one network takes at once",
  },
  {
    key: "provisionPerNetworkPerSecond",
    name: "provision-per-network-per-second",
    form: "rate",
    min: 0,
    meaning: "valid Provision calls a network regains per second",
  },
  {
    key: "maxPeersPerNetwork",
    name: "max-peers-per-network",
    form: "integer",
    min: 1,
    meaning: "nodes one network may hold",
  },
  {
    key: "maxTunnels",
    name: "max-tunnels",
    form: "integer",
    min: 1,
    meaning: "node streams open at once (Node: per process; Workers: per network's object)",
  },
  {
    key: "livenessTimeoutMs",
    name: "liveness-timeout-ms",
    form: "integer",
    min: 1_000,
    meaning: "silence (ms) after which a stream is closed as dead",
  },
  {
    key: "ackTimeoutMs",
    name: "ack-timeout-ms",
    form: "integer",
    min: 1,
    meaning: "how long (ms) Provision waits for the management server to confirm a new peer",
  },
  {
    key: "nodeBurst",
    name: "node-burst",
    form: "integer",
    min: 1,
    meaning: "datagrams one node stream may send at once",
  },
  {
    key: "nodeDatagramsPerSecond",
    name: "node-datagrams-per-second",
    form: "rate",
    min: 0,
    meaning: "datagrams a node stream regains per second",
  },
  {
    key: "nodeQueueDatagrams",
    name: "node-queue-datagrams",
    form: "integer",
    min: 1,
    meaning: "datagrams held for a congested node stream",
  },
  {
    key: "nodeQueueBytes",
    name: "node-queue-bytes",
    form: "integer",
    min: 1,
    meaning: "datagram bytes held for a congested node stream",
  },
  {
    key: "uplinkQueueDatagrams",
    name: "uplink-queue-datagrams",
    form: "integer",
    min: 1,
    meaning: "datagrams held for a congested uplink",
  },
  {
    key: "uplinkQueueBytes",
    name: "uplink-queue-bytes",
    form: "integer",
    min: 1,
    meaning: "datagram bytes held for a congested uplink",
  },
  {
    key: "highWaterBytes",
    name: "high-water-bytes",
    form: "integer",
    min: 1,
    meaning: "unsent bytes above which a stream counts as congested",
  },
  {
    key: "retryMs",
    name: "retry-ms",
    form: "integer",
    min: 1,
    meaning: "how often (ms) a congested stream is retried",
  },
  {
    key: "maxCandidatesPerAddress",
    name: "max-candidates-per-address",
    form: "integer",
    min: 1,
    meaning: "streams per node address waiting to prove the node's key beside the live one",
  },
  {
    key: "candidateTimeoutMs",
    name: "candidate-timeout-ms",
    form: "integer",
    min: 1,
    meaning: "how long (ms) such a stream may take to prove it before it is closed",
  },
];

/** Where a setting's text came from, so an error names what the operator wrote. */
export type SettingSource = "worker" | "env" | "flag";

/** A setting whose text cannot be used: `setting` is the var, variable or flag as written. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
  readonly setting: string;
  readonly value: string;
  constructor(setting: string, value: string, expected: string) {
    super(`${setting}=${JSON.stringify(value)} is not valid: expected ${expected}`);
    this.setting = setting;
    this.value = value;
  }
}

/** `liveness-timeout-ms` -> `RELAY_LIVENESS_TIMEOUT_MS`. */
export function workerVarName(name: string): string {
  return `RELAY_${name.toUpperCase().replaceAll("-", "_")}`;
}

/** `liveness-timeout-ms` -> `SIDEROLINK_RELAY_LIVENESS_TIMEOUT_MS`. */
export function envVarName(name: string): string {
  return `SIDEROLINK_${workerVarName(name)}`;
}

/** How `name` reads in an error for `source`. */
export function settingLabel(name: string, source: SettingSource): string {
  if (source === "worker") return workerVarName(name);
  if (source === "env") return envVarName(name);
  return `--${name}`;
}

export function defaultSettings(): NumericSettings {
  const r = DEFAULT_RELAY_LIMITS;
  const h = DEFAULT_HUB_LIMITS;
  return {
    provisionPerClientBurst: r.provisionPerClient.burst,
    provisionPerClientPerSecond: r.provisionPerClient.perSecond,
    provisionFailuresPerClientBurst: r.provisionFailuresPerClient.burst,
    provisionFailuresPerClientPerSecond: r.provisionFailuresPerClient.perSecond,
    provisionPerNetworkBurst: r.provisionPerNetwork.burst,
    provisionPerNetworkPerSecond: r.provisionPerNetwork.perSecond,
    maxPeersPerNetwork: r.maxPeersPerNetwork,
    maxTunnels: r.maxTunnels,
    livenessTimeoutMs: h.livenessTimeoutMs,
    ackTimeoutMs: h.ackTimeoutMs,
    nodeBurst: h.nodeBurst,
    nodeDatagramsPerSecond: h.nodeDatagramsPerSecond,
    nodeQueueDatagrams: h.nodeQueue.datagrams,
    nodeQueueBytes: h.nodeQueue.bytes,
    uplinkQueueDatagrams: h.uplinkQueue.datagrams,
    uplinkQueueBytes: h.uplinkQueue.bytes,
    highWaterBytes: h.highWaterBytes,
    retryMs: h.retryMs,
    maxCandidatesPerAddress: h.maxCandidatesPerAddress,
    candidateTimeoutMs: h.candidateTimeoutMs,
  };
}

const DECIMAL = /^\d+(?:\.\d+)?$/;
const INTEGER = /^\d+$/;

/** Reads one numeric setting's text; undefined or "" leaves the default. */
export function parseSetting(
  setting: NumericSetting,
  value: string | number | undefined,
  source: SettingSource,
): number | undefined {
  if (value === undefined || value === "") return undefined;
  const text = String(value).trim();
  const integer = setting.form === "integer";
  const number = Number(text);
  const shaped = (integer ? INTEGER : DECIMAL).test(text) && Number.isFinite(number);
  const inRange = integer ? number >= setting.min : number > setting.min;
  if (!shaped || !inRange) {
    const unit = setting.name.endsWith("-ms") ? " of milliseconds" : "";
    const expected = integer
      ? `a whole number${unit} >= ${setting.min} (${setting.meaning}), written in digits only`
      : `a decimal number > ${setting.min} (${setting.meaning}), like 0.5 or 2`;
    throw new ConfigError(settingLabel(setting.name, source), text, expected);
  }
  return number;
}

/**
 * Reads every numeric setting `lookup` knows (by setting name) over `base`. Throws the first
 * ConfigError; `source` says how to name the setting in it.
 */
export function readSettings(
  lookup: (name: string) => string | number | undefined,
  source: SettingSource,
  base: NumericSettings = defaultSettings(),
): NumericSettings {
  const settings = { ...base };
  for (const setting of SETTINGS) {
    const value = parseSetting(setting, lookup(setting.name), source);
    if (value !== undefined) settings[setting.key] = value;
  }
  return settings;
}

/** A Worker's configuration from its vars (`RELAY_<NAME>`). */
export function workerConfig(vars: Readonly<Record<string, unknown>>): RelayConfig {
  const lookup = (name: string): string | number | undefined => {
    const value = vars[workerVarName(name)];
    return typeof value === "string" || typeof value === "number" ? value : undefined;
  };
  return {
    ...limitsOf(readSettings(lookup, "worker")),
    trustedProxies: [],
  };
}

/**
 * A Node relay's configuration: environment variables (`SIDEROLINK_RELAY_<NAME>`), then flags
 * (`--<name>`, by name without the dashes) over them.
 */
export function nodeConfig(
  flags: Readonly<Record<string, string | undefined>>,
  env: Readonly<Record<string, string | undefined>>,
): RelayConfig {
  const fromEnv = readSettings((name) => env[envVarName(name)], "env");
  const settings = readSettings((name) => flags[name], "flag", fromEnv);
  const proxiesFlag = flags[TRUSTED_PROXIES];
  const proxies =
    proxiesFlag !== undefined
      ? parseTrustedProxies(proxiesFlag, "flag")
      : parseTrustedProxies(env[envVarName(TRUSTED_PROXIES)] ?? "", "env");
  return { ...limitsOf(settings), trustedProxies: proxies };
}

/** The relay's and the hub's limits from flat settings. */
export function limitsOf(s: NumericSettings): Omit<RelayConfig, "trustedProxies"> {
  return {
    limits: {
      provisionPerClient: {
        burst: s.provisionPerClientBurst,
        perSecond: s.provisionPerClientPerSecond,
      },
      provisionFailuresPerClient: {
        burst: s.provisionFailuresPerClientBurst,
        perSecond: s.provisionFailuresPerClientPerSecond,
      },
      provisionPerNetwork: {
        burst: s.provisionPerNetworkBurst,
        perSecond: s.provisionPerNetworkPerSecond,
      },
      maxPeersPerNetwork: s.maxPeersPerNetwork,
      maxTunnels: s.maxTunnels,
    },
    hubLimits: {
      livenessTimeoutMs: s.livenessTimeoutMs,
      ackTimeoutMs: s.ackTimeoutMs,
      nodeBurst: s.nodeBurst,
      nodeDatagramsPerSecond: s.nodeDatagramsPerSecond,
      nodeQueue: { datagrams: s.nodeQueueDatagrams, bytes: s.nodeQueueBytes },
      uplinkQueue: { datagrams: s.uplinkQueueDatagrams, bytes: s.uplinkQueueBytes },
      highWaterBytes: s.highWaterBytes,
      retryMs: s.retryMs,
      maxCandidatesPerAddress: s.maxCandidatesPerAddress,
      candidateTimeoutMs: s.candidateTimeoutMs,
    },
  };
}

/** `10.0.0.1, 192.168.0.0/16, fd00::/8`: addresses or prefixes, comma-separated. */
export function parseTrustedProxies(text: string, source: SettingSource): Prefix[] {
  const prefixes: Prefix[] = [];
  for (const item of text.split(",")) {
    const trimmed = item.trim();
    if (trimmed === "") continue;
    try {
      prefixes.push(parseNetworkPrefix(trimmed, TRUSTED_PROXIES));
    } catch (error) {
      if (!(error instanceof SideroLinkError)) throw error;
      throw new ConfigError(
        settingLabel(TRUSTED_PROXIES, source),
        text,
        "comma-separated addresses or prefixes of your reverse proxies, like 127.0.0.1,10.0.0.0/8",
      );
    }
  }
  return prefixes;
}

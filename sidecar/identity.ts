/**
 * Who this node is to the relay, as Talos says it: the machine's UUID (`node_uuid`) and a unique
 * token (`node_unique_token`) that tells apart machines whose firmware reports the same UUID.
 * The pair picks the node's address, so both must stay the same across restarts.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { generateUniqueToken, loadOrCreate, UNIQUE_TOKEN_FILE } from "./state.ts";

export interface IdentitySources {
  /** Default /sys/class/dmi/id/product_uuid. */
  readonly productUuidPath?: string;
  /** Default /etc/machine-id. */
  readonly machineIdPath?: string;
}

export interface NodeIdentity {
  readonly nodeUuid: string;
  /** Where the UUID came from, for the log. */
  readonly uuidSource: "flag" | "dmi" | "machine-id";
  readonly uniqueToken: string;
}

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const MACHINE_ID_PATTERN = /^[0-9a-f]{32}$/;
/**
 * Firmware placeholders that many machines share: all zeros, all ones, and the sequential
 * value some vendors ship. A UUID shared by many machines would give them one address.
 */
const PLACEHOLDER_UUIDS = new Set([
  "00000000-0000-0000-0000-000000000000",
  "ffffffff-ffff-ffff-ffff-ffffffffffff",
  "03000200-0400-0500-0006-000700080009",
]);

/**
 * The node's identity: `uuid` if given, else the DMI product UUID, else one derived from
 * /etc/machine-id; and `uniqueToken` if given, else the one kept in the state directory
 * (generated on first start).
 */
export function resolveIdentity(options: {
  readonly uuid?: string | undefined;
  readonly uniqueToken?: string | undefined;
  readonly stateDirectory: string;
  readonly sources?: IdentitySources;
}): NodeIdentity {
  const uniqueToken =
    options.uniqueToken ??
    loadOrCreate(options.stateDirectory, UNIQUE_TOKEN_FILE, generateUniqueToken);
  if (options.uuid !== undefined) {
    const uuid = options.uuid.toLowerCase();
    if (!UUID_PATTERN.test(uuid)) {
      throw new Error(
        `--node-uuid ${JSON.stringify(options.uuid)} is not a UUID; expected 8-4-4-4-12 hex digits`,
      );
    }
    return { nodeUuid: uuid, uuidSource: "flag", uniqueToken };
  }
  const sources = options.sources ?? {};
  const dmi = readProductUuid(sources.productUuidPath ?? "/sys/class/dmi/id/product_uuid");
  if (dmi !== undefined) return { nodeUuid: dmi, uuidSource: "dmi", uniqueToken };
  const machineIdPath = sources.machineIdPath ?? "/etc/machine-id";
  const machineId = readTrimmed(machineIdPath)?.toLowerCase();
  if (machineId === undefined || !MACHINE_ID_PATTERN.test(machineId)) {
    throw new Error(
      `no usable machine UUID: /sys/class/dmi/id/product_uuid is missing or a placeholder, and ` +
        `${machineIdPath} does not hold 32 hex digits; pass --node-uuid`,
    );
  }
  return { nodeUuid: uuidFromMachineId(machineId), uuidSource: "machine-id", uniqueToken };
}

/** The DMI UUID in lower case, or undefined when absent, unreadable or a placeholder. */
export function readProductUuid(path: string): string | undefined {
  const uuid = readTrimmed(path)?.toLowerCase();
  if (uuid === undefined || !UUID_PATTERN.test(uuid) || PLACEHOLDER_UUIDS.has(uuid))
    return undefined;
  return uuid;
}

/**
 * A stable UUID for a machine id: the first 16 bytes of SHA-256 over a fixed label and the id
 * (the id itself stays private, as machine-id(5) asks), marked as an RFC 9562 version 8 UUID.
 */
export function uuidFromMachineId(machineId: string): string {
  const bytes = createHash("sha256").update(`siderolink-sidecar node uuid\n${machineId}`).digest();
  bytes[6] = (bytes[6] & 0x0f) | 0x80;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = bytes.subarray(0, 16).toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

function readTrimmed(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8").trim();
  } catch {
    return undefined;
  }
}

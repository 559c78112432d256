/**
 * Which secret opens a network's uplink. The uplink has its own secret, apart from the admin
 * secret: a holder of the admin API's credential (scripts, dashboards) cannot connect an uplink.
 *
 * A network created before uplinks had their own secret has none: its uplink still opens with the
 * admin secret, so that upgrading the relay does not cut off a running management server, and
 * every such opening is logged as a warning naming the command that mints one. Once one exists,
 * the admin secret opens the uplink no more. The server key pin (runtime.ts) holds either way.
 */
import { hashSecret } from "../store/secret-hash.ts";
import type { NetworkRecord } from "../store/store.ts";
import { constantTimeEqual } from "./secrets.ts";

/** How an uplink's credential was judged. */
export type UplinkCredential =
  | { readonly accepted: true; readonly legacyAdminSecret: boolean }
  | { readonly accepted: false; readonly reason: string };

/**
 * Judges the bearer secret an uplink presents to the network named `name`, whose record is
 * `network` (undefined: it does not exist, which the answer does not reveal).
 */
export function checkUplinkSecret(
  name: string,
  network: NetworkRecord | undefined,
  presented: string | undefined,
): UplinkCredential {
  if (!network || presented === undefined) return refused(name);
  const digest = hashSecret(presented);
  if (network.uplinkSecretHash === null) {
    return constantTimeEqual(digest, network.adminSecretHash)
      ? { accepted: true, legacyAdminSecret: true }
      : refused(name);
  }
  if (constantTimeEqual(digest, network.uplinkSecretHash))
    return { accepted: true, legacyAdminSecret: false };
  if (constantTimeEqual(digest, network.adminSecretHash)) {
    return {
      accepted: false,
      reason:
        "the admin secret does not open the uplink; give the sidecar its uplink secret (--uplink-secret-file)",
    };
  }
  return refused(name);
}

/** The log's warning for an uplink opened with the admin secret (a network without an uplink secret). */
export function legacyUplinkWarning(network: string): string {
  return `network ${network} has no uplink secret, so its admin secret opened the uplink; mint one (siderolink-relay network uplink-secret ${network}), give it to the server sidecar (--uplink-secret-file), and the admin secret opens the uplink no more`;
}

function refused(network: string): UplinkCredential {
  return {
    accepted: false,
    reason: `invalid uplink secret for this network (a new one: siderolink-relay network uplink-secret ${network})`,
  };
}

/**
 * TLS settings shared by every client of the sidecar (Provision, tunnel, uplink, relay API):
 * the system roots by default, `--ca-file` for a private CA, and verification off only with
 * an explicit `--insecure`.
 */
import { readFileSync } from "node:fs";

export interface TlsSettings {
  /** PEM of the private CA, in addition to nothing else: when set, only it is trusted. */
  readonly ca?: Buffer;
  readonly insecure: boolean;
}

export function loadTlsSettings(caFile: string | undefined, insecure: boolean): TlsSettings {
  if (caFile === undefined) return { insecure };
  try {
    return { ca: readFileSync(caFile), insecure };
  } catch (cause) {
    throw new Error(`--ca-file ${caFile}: ${(cause as Error).message}`, { cause });
  }
}

/** Options for node:tls, node:https, node:http2 and ws. */
export function tlsOptions(settings: TlsSettings): { ca?: Buffer; rejectUnauthorized: boolean } {
  return {
    ...(settings.ca ? { ca: settings.ca } : {}),
    rejectUnauthorized: !settings.insecure,
  };
}

export const INSECURE_WARNING =
  "TLS certificate verification is OFF (--insecure): anyone on the path can impersonate the relay; use --ca-file instead";

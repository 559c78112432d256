import { formatIPv6, parseIPv6 } from "../net/ip.ts";
import { SideroLinkError } from "./errors.ts";

/**
 * Where and how to reach a SideroLink API, read from the kernel argument `siderolink.api` or a
 * SideroLinkConfig document's `apiUrl` the way Talos reads it:
 *
 *   [scheme://][user@]host[:port][/path][?jointoken=T&grpc_tunnel=true][#fragment]
 *
 * - No `scheme://` means `grpc://`. Scheme `grpc` is plaintext HTTP/2; every other scheme,
 *   `https` or not, is TLS.
 * - No port means 443: Talos appends it for `https`, and gRPC's DNS resolver uses 443 for any
 *   other target without one.
 * - `jointoken` is the first value of that query parameter; an empty one is no token.
 * - Talos asks for WireGuard over gRPC only when `grpc_tunnel` is exactly `true` or `y`. It reads
 *   every other value as false; here the other values except `false` and `n` are errors, so a
 *   `grpc_tunnel=1` that Talos would silently ignore is caught.
 * - User info, path and fragment do not change where Talos connects.
 */
export interface ApiUrl {
  /** Lower-case, `grpc` when none was written. */
  readonly scheme: string;
  /** A DNS name or an IP address; IPv6 without brackets, in canonical form. */
  readonly host: string;
  readonly port: number;
  /** Whether to speak TLS; false only for `grpc`. */
  readonly tls: boolean;
  /** `host:port`, IPv6 in brackets: what to dial. */
  readonly authority: string;
  /** `https://authority` or `http://authority`: the base URL for HTTP/2 clients. */
  readonly origin: string;
  /** The path as written, often empty. */
  readonly path: string;
  readonly joinToken?: string;
  /** The client's wish to carry WireGuard over a stream; the server decides. */
  readonly grpcTunnel: boolean;
}

// The one plaintext scheme, and the scheme of a URL written without one.
const PLAINTEXT_SCHEME = "grpc";
const DEFAULT_PORT = 443;
const TUNNEL_ON = ["true", "y"];
const TUNNEL_OFF = ["", "false", "n"];

const LEADING_SCHEME = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//;
// Talos adds `grpc://` only when no letters followed by `://` occur anywhere in the text.
const ANY_SCHEME = /[A-Za-z]+:\/\//;
const HOST_NAME = /^[A-Za-z0-9._~-]+$/;
const DECIMAL = /^\d{1,5}$/;

/**
 * Parses a SideroLink API URL. Errors name `field` and the part that is wrong, but never echo
 * the whole text: it carries the join token.
 */
export function parseApiUrl(text: string, field = "siderolink.api"): ApiUrl {
  const fail = (detail: string): never => {
    throw new SideroLinkError("invalid", field, detail);
  };
  if (text === "") {
    throw new SideroLinkError(
      "missing",
      field,
      "empty; expected a URL like https://siderolink.example.com?jointoken=TOKEN",
    );
  }
  const schemeMatch = LEADING_SCHEME.exec(text);
  if (!schemeMatch && ANY_SCHEME.test(text)) {
    fail("'://' must follow a scheme at the very start, like https://host or grpc://host:8090");
  }
  const scheme = schemeMatch ? schemeMatch[1].toLowerCase() : PLAINTEXT_SCHEME;
  const rest = schemeMatch ? text.slice(schemeMatch[0].length) : text;

  const authorityEnd = firstIndexOf(rest, "/?#");
  const authority = rest.slice(0, authorityEnd);
  const afterAuthority = rest.slice(authorityEnd);
  const fragmentStart = firstIndexOf(afterAuthority, "#");
  const queryStart = firstIndexOf(afterAuthority.slice(0, fragmentStart), "?");
  const path = afterAuthority.slice(0, queryStart);
  const query = new URLSearchParams(afterAuthority.slice(queryStart + 1, fragmentStart));

  const { host, port } = parseHostPort(
    authority.slice(authority.lastIndexOf("@") + 1),
    field,
    fail,
  );

  const joinToken = query.get("jointoken") ?? "";
  const tunnel = query.get("grpc_tunnel") ?? "";
  if (!TUNNEL_ON.includes(tunnel) && !TUNNEL_OFF.includes(tunnel)) {
    fail(
      `grpc_tunnel=${JSON.stringify(tunnel)} is not recognised; Talos tunnels only for "true" or "y" and reads anything else as false: write grpc_tunnel=true, or grpc_tunnel=false, or leave it out`,
    );
  }

  const tls = scheme !== PLAINTEXT_SCHEME;
  const hostPart = host.includes(":") ? `[${host}]` : host;
  const resolvedPort = port ?? DEFAULT_PORT;
  const authorityText = `${hostPart}:${resolvedPort}`;
  return {
    scheme,
    host,
    port: resolvedPort,
    tls,
    authority: authorityText,
    origin: `${tls ? "https" : "http"}://${authorityText}`,
    path,
    ...(joinToken === "" ? {} : { joinToken }),
    grpcTunnel: TUNNEL_ON.includes(tunnel),
  };
}

function parseHostPort(
  text: string,
  field: string,
  fail: (detail: string) => never,
): { host: string; port: number | undefined } {
  let host: string;
  let portText: string | undefined;
  if (text.startsWith("[")) {
    const close = text.indexOf("]");
    if (close < 0) fail("an IPv6 address opened with '[' has no closing ']'");
    host = formatIPv6(parseIPv6(text.slice(1, close), field));
    const after = text.slice(close + 1);
    if (after !== "" && !after.startsWith(":")) {
      fail(`unexpected ${JSON.stringify(after)} after the IPv6 address; expected [address]:port`);
    }
    portText = after === "" ? undefined : after.slice(1);
  } else {
    const colons = text.split(":").length - 1;
    if (colons > 1) fail("an IPv6 address in a URL needs brackets, like grpc://[fd00::1]:8090");
    const colon = text.indexOf(":");
    host = colon < 0 ? text : text.slice(0, colon);
    portText = colon < 0 ? undefined : text.slice(colon + 1);
    if (host === "") fail("no host; expected a URL like https://siderolink.example.com");
    if (!HOST_NAME.test(host)) {
      fail(`host ${JSON.stringify(host)} is not a DNS name or IP address`);
    }
  }
  if (portText === undefined) return { host, port: undefined };
  const port = Number(portText);
  if (!DECIMAL.test(portText) || port < 1 || port > 65535) {
    fail(`port ${JSON.stringify(portText)} is not a number from 1 to 65535; leave it out for 443`);
  }
  return { host, port };
}

/** The index of the first of `chars` in `text`, or its length when none occurs. */
function firstIndexOf(text: string, chars: string): number {
  for (let i = 0; i < text.length; i++) if (chars.includes(text[i])) return i;
  return text.length;
}

import { parseAllDocuments } from "yaml";
import { type ApiUrl, parseApiUrl } from "./api-url.ts";
import { SideroLinkError } from "./errors.ts";

/**
 * The Talos machine configuration document that points a machine at SideroLink, one document
 * of a multi-document YAML stream:
 *
 *   apiVersion: v1alpha1
 *   kind: SideroLinkConfig
 *   apiUrl: https://siderolink.example.com?jointoken=TOKEN   # scheme https or grpc, no path
 *   uniqueToken: ...                                         # optional
 */
export interface SideroLinkConfig {
  /** `apiUrl` as written. */
  readonly apiUrl: string;
  readonly api: ApiUrl;
  /** The node's unique token, sent as `node_unique_token`. */
  readonly uniqueToken?: string;
}

const KIND = "SideroLinkConfig";
const API_VERSION = "v1alpha1";
const FIELDS = ["apiVersion", "kind", "apiUrl", "uniqueToken"];
// The document accepts fewer URLs than the kernel argument: Talos's validation asks for one of
// these schemes written out, and an empty path.
const DOCUMENT_SCHEME = /^(https|grpc):\/\//i;
const DOCUMENT_PATHS = ["", "/"];

/**
 * Finds and checks the one SideroLinkConfig document in `text`, a YAML stream that may hold other
 * machine configuration documents. Errors say which field is wrong and what it accepts; they
 * never echo values, which carry tokens.
 */
export function parseSideroLinkConfig(text: string): SideroLinkConfig {
  let found: Record<string, unknown> | undefined;
  let count = 0;
  for (const document of parseAllDocuments(text)) {
    count++;
    const error = document.errors[0];
    if (error) {
      // Only the first line: the rest quotes the source, which may hold tokens.
      const where = error.message.split("\n")[0].replace(/:$/, "");
      throw new SideroLinkError("invalid", "yaml", `document ${count}: ${where}`);
    }
    let content: unknown;
    try {
      // toJS resolves aliases: an undefined one, or a chain that would expand without bound
      // (more than 100 alias uses), throws here rather than allocating.
      content = document.toJS({ maxAliasCount: 100 });
    } catch (cause) {
      const where = cause instanceof Error ? cause.message.split("\n")[0] : String(cause);
      throw new SideroLinkError("invalid", "yaml", `document ${count}: ${where}`, { cause });
    }
    if (!isRecord(content) || content.kind !== KIND) continue;
    if (found) {
      throw new SideroLinkError("invalid", "kind", `more than one ${KIND} document; keep one`);
    }
    found = content;
  }
  if (!found) {
    throw new SideroLinkError(
      "missing",
      "kind",
      `no ${KIND} document among ${count}; add one with apiVersion: ${API_VERSION}, kind: ${KIND} and apiUrl`,
    );
  }
  return checkDocument(found);
}

function checkDocument(document: Record<string, unknown>): SideroLinkConfig {
  for (const key of Object.keys(document)) {
    if (!FIELDS.includes(key)) {
      throw new SideroLinkError(
        "invalid",
        key,
        `unknown field in ${KIND}; it has ${FIELDS.join(", ")}`,
      );
    }
  }
  if (document.apiVersion !== API_VERSION) {
    throw new SideroLinkError(
      document.apiVersion === undefined ? "missing" : "invalid",
      "apiVersion",
      `${KIND} supports apiVersion ${API_VERSION} only`,
    );
  }

  const apiUrl = document.apiUrl;
  if (apiUrl === undefined || apiUrl === null || apiUrl === "") {
    throw new SideroLinkError("missing", "apiUrl", "required; like https://siderolink.example.com");
  }
  if (typeof apiUrl !== "string") {
    throw new SideroLinkError("invalid", "apiUrl", "must be a string URL");
  }
  if (!DOCUMENT_SCHEME.test(apiUrl)) {
    throw new SideroLinkError("invalid", "apiUrl", "scheme must be https:// or grpc://");
  }
  const api = parseApiUrl(apiUrl, "apiUrl");
  if (!DOCUMENT_PATHS.includes(api.path)) {
    throw new SideroLinkError(
      "invalid",
      "apiUrl",
      `path must be empty or "/", got ${JSON.stringify(api.path)}; put the join token in ?jointoken=`,
    );
  }

  const uniqueToken = document.uniqueToken;
  if (uniqueToken !== undefined && uniqueToken !== null && typeof uniqueToken !== "string") {
    throw new SideroLinkError("invalid", "uniqueToken", "must be a string");
  }
  return {
    apiUrl,
    api,
    ...(typeof uniqueToken === "string" && uniqueToken !== "" ? { uniqueToken } : {}),
  };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

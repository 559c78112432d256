/**
 * The node's `sidero.link.ProvisionService/Provision` call, the way Talos makes it: plain gRPC
 * over HTTP/2 for `grpc://` URLs, and over TLS for the rest, where an edge relay (Workers) also
 * takes Connect or gRPC-web over HTTP/1.1. One call, 30 s deadline; errors come back sorted into
 * those worth retrying (the relay or its management server is away) and those that are not (a
 * wrong token: retrying would only hammer the relay).
 */
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import { ProvisionService } from "../shared/gen/sidero/link/provision_pb.ts";
import type { ApiUrl } from "../shared/siderolink/api-url.ts";
import { endpointsFromWire } from "../shared/siderolink/endpoints.ts";
import { REVOKED_NODE } from "../shared/siderolink/relay-api.ts";
import { ExitCode, SidecarError } from "./exit-codes.ts";
import {
  createProxyAgent,
  http2ProxyConnection,
  NO_PROXY,
  type ProxySettings,
  proxyFor,
} from "./net/proxy.ts";
import { type TlsSettings, tlsOptions } from "./tls.ts";

/** Talos's Provision deadline. */
export const PROVISION_TIMEOUT_MS = 30_000;

export type ProvisionProtocol = "grpc" | "connect" | "grpc-web";

export interface ProvisionParams {
  readonly nodeUuid: string;
  readonly nodePublicKey: string;
  readonly joinToken?: string | undefined;
  readonly uniqueToken: string;
  readonly wireguardOverGrpc: boolean;
}

export interface ProvisionResult {
  /** Endpoints in preference order (the wire order quirk undone). */
  readonly endpoints: readonly string[];
  readonly serverPublicKey: string;
  /** `address/64`: the node's address and prefix length. */
  readonly nodeAddressPrefix: string;
  readonly serverAddress: string;
  /** Non-empty: tunnel to this virtual `[addr]:port`. */
  readonly grpcPeerAddrPort: string;
}

/** A failed Provision that may succeed later (relay down, management server away, limits). */
/**
 * The operator revoked this node: a running node waits for `node admit` and provisions again
 * (Talos keeps retrying too); at start it is a credentials error like a refused join token.
 */
export class NodeRefusedError extends SidecarError {
  constructor(message: string, options?: ErrorOptions) {
    super(ExitCode.BadCredentials, message, options);
  }
}

export class ProvisionRetryableError extends Error {
  override readonly name = "ProvisionRetryableError";
  readonly code: Code | undefined;
  constructor(message: string, code: Code | undefined, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
  }
}

/** The protocol a URL gets unless `--provision-protocol` says otherwise. */
export function defaultProvisionProtocol(api: ApiUrl): ProvisionProtocol {
  return api.tls ? "connect" : "grpc";
}

export function createProvisionTransport(
  api: ApiUrl,
  protocol: ProvisionProtocol,
  tls: TlsSettings,
  proxies: ProxySettings = NO_PROXY,
): Transport {
  if (protocol === "grpc") {
    const secure = api.tls ? { ...tlsOptions(tls), ALPNProtocols: ["h2"] } : {};
    const createConnection = http2ProxyConnection(proxies, api.origin, secure);
    return createGrpcTransport({
      baseUrl: api.origin,
      nodeOptions: { ...secure, ...(createConnection ? { createConnection } : {}) },
    });
  }
  const proxy = proxyFor(proxies, new URL(api.origin));
  const agent = proxy ? { agent: createProxyAgent(proxy, api.tls, true) } : {};
  // Connect and gRPC-web over HTTP/1.1: what a local relay speaks on the same port, and what
  // passes an HTTP proxy.
  const options = {
    baseUrl: api.origin,
    httpVersion: "1.1" as const,
    nodeOptions: { ...(api.tls ? tlsOptions(tls) : {}), ...agent },
  };
  return protocol === "connect" ? createConnectTransport(options) : createGrpcWebTransport(options);
}

/**
 * Calls Provision. Throws SidecarError(BadCredentials) for a refused join token,
 * SidecarError(Failure) for a request the relay calls invalid, and ProvisionRetryableError for
 * everything that may pass with time.
 */
export async function provision(
  transport: Transport,
  params: ProvisionParams,
  timeoutMs = PROVISION_TIMEOUT_MS,
): Promise<ProvisionResult> {
  const client = createClient(ProvisionService, transport);
  let response: Awaited<ReturnType<typeof client.provision>>;
  try {
    response = await client.provision(
      {
        nodeUuid: params.nodeUuid,
        nodePublicKey: params.nodePublicKey,
        joinToken: params.joinToken,
        nodeUniqueToken: params.uniqueToken,
        wireguardOverGrpc: params.wireguardOverGrpc,
      },
      { timeoutMs },
    );
  } catch (error) {
    throw classifyProvisionError(error);
  }
  if (response.serverPublicKey === "" || response.nodeAddressPrefix === "") {
    throw new ProvisionRetryableError(
      "the relay answered Provision without a server key or node address",
      undefined,
    );
  }
  return {
    endpoints: endpointsFromWire(response.serverEndpoint),
    serverPublicKey: response.serverPublicKey,
    nodeAddressPrefix: response.nodeAddressPrefix,
    serverAddress: response.serverAddress,
    grpcPeerAddrPort: response.grpcPeerAddrPort,
  };
}

export function classifyProvisionError(error: unknown): Error {
  const connectError = ConnectError.from(error);
  const detail = connectError.rawMessage;
  switch (connectError.code) {
    case Code.PermissionDenied:
    case Code.Unauthenticated:
      if (detail.includes(REVOKED_NODE))
        return new NodeRefusedError(`the relay refused this node: ${detail}`, { cause: error });
      return new SidecarError(
        ExitCode.BadCredentials,
        `the relay refused the join token (${detail}): check jointoken= in the API URL; ` +
          "a fresh one comes from `siderolink-relay network show NAME --json`",
        { cause: error },
      );
    case Code.InvalidArgument:
      return new SidecarError(
        ExitCode.Failure,
        `the relay rejected the Provision request: ${detail}`,
        {
          cause: error,
        },
      );
    case Code.Unimplemented:
      return new SidecarError(
        ExitCode.BadUrl,
        `the API URL does not serve SideroLink Provision (${detail}); check the host, port and scheme`,
        { cause: error },
      );
    default:
      return new ProvisionRetryableError(
        `${Code[connectError.code] ?? connectError.code}: ${detail}${causeText(error)}`,
        connectError.code,
        { cause: error },
      );
  }
}

function causeText(error: unknown): string {
  const cause = (error as { cause?: unknown }).cause;
  if (cause instanceof Error && !(error as Error).message.includes(cause.message))
    return ` (${cause.message})`;
  return "";
}

/**
 * `sidero.link.ProvisionService/Provision` on the LAN, answered by the relay: the machine's
 * request (its join token included: the gateway holds none) goes to the relay over Connect or
 * gRPC-web, so the relay alone checks tokens, assigns addresses and keeps state. Its answer, or
 * its error code with its message, goes back to the machine unchanged, except that `answer`
 * may rewrite where a UDP machine sends its WireGuard datagrams.
 */

import type { ServiceImpl } from "@connectrpc/connect";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import {
  type ProvisionRequest,
  type ProvisionResponse,
  ProvisionService,
} from "../../shared/gen/sidero/link/provision_pb.ts";
import { parseJoinToken } from "../../shared/siderolink/relay-api.ts";
import { PROVISION_TIMEOUT_MS } from "../provision-client.ts";
import { type LanConnection, lanConnectionKey } from "./lan-server.ts";

export interface ProvisionForwarderOptions {
  readonly relay: Transport;
  /** The relay network this gateway tunnels to; tokens for another are refused here. */
  readonly network: string;
  /** Turns the relay's answer into the machine's (and registers the machine). */
  answer(
    request: ProvisionRequest,
    response: ProvisionResponse,
    lan: LanConnection,
  ): ProvisionResponse;
  /** Counts one call by outcome: "ok" or the gRPC code's name. */
  count(outcome: string): void;
}

export function createProvisionForwarder(
  options: ProvisionForwarderOptions,
): ServiceImpl<typeof ProvisionService> {
  const client = createClient(ProvisionService, options.relay);
  return {
    async provision(request, context) {
      const lan = context.values.get(lanConnectionKey);
      // The network part of a join token is no secret: it routes the call.
      const named = parseJoinToken(request.joinToken ?? "")?.network;
      if (lan === undefined || (named !== undefined && named !== options.network)) {
        options.count(Code[Code.PermissionDenied]);
        throw new ConnectError(
          `this site gateway serves relay network "${options.network}", not "${named}": ` +
            "point the machine at the gateway of its network",
          Code.PermissionDenied,
        );
      }
      let response: ProvisionResponse;
      try {
        response = await client.provision(request, {
          timeoutMs: Math.min(context.timeoutMs() ?? PROVISION_TIMEOUT_MS, PROVISION_TIMEOUT_MS),
          signal: context.signal,
        });
      } catch (error) {
        const relayError = ConnectError.from(error);
        options.count(Code[relayError.code]);
        throw new ConnectError(relayError.rawMessage, relayError.code);
      }
      options.count("ok");
      return options.answer(request, response, lan);
    },
  };
}

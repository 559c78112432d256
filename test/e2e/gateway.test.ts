/**
 * The site gateway end to end with the relay Worker in workerd (Miniflare) over HTTPS: Talos
 * machines behind a site's UDP-blocking firewall, one tunnelling over gRPC to the gateway and
 * one on plain WireGuard UDP to it, reach the management server.
 */
import { describeGateway } from "./support/gateway-suite.ts";

describeGateway("worker");

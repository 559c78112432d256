/**
 * The site gateway carrying its machines to the relay Worker over the HTTP-only tunnel (gRPC-web
 * over plain HTTP/1.1 requests), for sites whose proxies drop WebSockets: the same checks as over
 * WebSocket.
 */
import { describeGateway } from "./support/gateway-suite.ts";

describeGateway("worker", { transport: "http" });

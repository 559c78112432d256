/**
 * The site gateway carrying its machines to the Node relay over plain gRPC CreateStream
 * (`--transport grpc`, one stream per machine as Talos opens it), UDP dropped at the site's
 * egress: the same checks as over WebSocket.
 */
import { describeGateway } from "./support/gateway-suite.ts";

describeGateway("node", { transport: "grpc" });

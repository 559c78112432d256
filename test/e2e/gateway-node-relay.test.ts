/**
 * The site gateway end to end with the relay on Node: the gateway provisions over Connect on
 * plain HTTP and tunnels over WebSocket, the same assertions as with the Worker.
 */
import { describeGateway } from "./support/gateway-suite.ts";

describeGateway("node");

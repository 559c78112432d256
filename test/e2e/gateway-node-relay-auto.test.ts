/**
 * The site gateway with `--transport auto` against the Node relay, UDP dropped at the site's
 * egress: each machine's tunnel picks the WebSocket, which gets through, and `status --json`
 * says so per machine with the reason; then the same checks as with a fixed transport.
 */
import { describeGateway } from "./support/gateway-suite.ts";

describeGateway("node", { transport: "auto" });

import { nodeHttpTunnelFixture } from "./fixtures/node-http-tunnel.ts";
import { describeRelayContract } from "./relay-contract.ts";

describeRelayContract(nodeHttpTunnelFixture());

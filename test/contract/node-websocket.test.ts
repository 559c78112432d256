import { nodeWebSocketFixture } from "./fixtures/node-websocket.ts";
import { describeRelayContract } from "./relay-contract.ts";

describeRelayContract(nodeWebSocketFixture());

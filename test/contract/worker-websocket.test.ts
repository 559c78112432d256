import { workerWebSocketFixture } from "./fixtures/worker-websocket.ts";
import { describeRelayContract } from "./relay-contract.ts";

describeRelayContract(workerWebSocketFixture());

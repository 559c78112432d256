import { workerHttpTunnelFixture } from "./fixtures/worker-http-tunnel.ts";
import { describeRelayContract } from "./relay-contract.ts";

describeRelayContract(workerHttpTunnelFixture());

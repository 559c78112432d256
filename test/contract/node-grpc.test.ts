import { nodeGrpcFixture } from "./fixtures/node-grpc.ts";
import { describeRelayContract } from "./relay-contract.ts";

describeRelayContract(nodeGrpcFixture());

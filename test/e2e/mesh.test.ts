/**
 * The mesh role end to end in namespaces, with the Node relay and with the Worker in workerd:
 * discovery through the relay, direct and relayed paths, the wrong token's member, sealed
 * records at rest, a blocked member going direct, and cleanup on SIGTERM. On the Node relay a
 * and c run the kernel backend (wireguard-go), so every backend pairing is covered; on the
 * Worker every member runs the userspace backend.
 */
import { describeMesh } from "./support/mesh-suite.ts";

describeMesh("node", { kernel: ["a", "c"] });
describeMesh("worker");

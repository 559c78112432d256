/**
 * The mesh role end to end in namespaces, with the Node relay and with the Worker in workerd:
 * discovery through the relay, direct and relayed paths, the wrong token's member, sealed
 * records at rest, a blocked member going direct, and cleanup on SIGTERM.
 */
import { describeMesh } from "./support/mesh-suite.ts";

describeMesh("node");
describeMesh("worker");

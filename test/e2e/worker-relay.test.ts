/**
 * The end-to-end suite with the relay Worker in workerd (Miniflare) inside the edge namespace,
 * served over HTTPS with a test CA: the sidecars provision over Connect and tunnel over wss.
 */
import { describeEndToEnd } from "./support/suite.ts";

describeEndToEnd("worker");

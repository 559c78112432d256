/**
 * The hub's datagrams on a WebSocket: each `sendDatagrams` call becomes one or more batch frames
 * (NODE_DATAGRAMS to a node, PEER_DATAGRAMS to the uplink), for the runtimes whose hub sockets
 * are WebSockets (relay/node/websocket.ts, relay/worker/hub-socket.ts).
 *
 * The two encoders serve every socket of the process (or isolate), so a socket costs no batch
 * buffer of its own: each call fills and flushes before it returns, and sockets never interleave.
 */
import { createBatchSender } from "../../shared/tunnel/batch-sender.ts";
import { createBatchEncoder } from "../../shared/tunnel/encode.ts";
import type { HubSocket } from "./socket.ts";

const nodeEncoder = createBatchEncoder(false);
const peerEncoder = createBatchEncoder(true);

/**
 * `sendDatagrams` for a socket whose `send` takes one binary frame. The frame is a view into a
 * shared buffer, reused once `send` returns: a `send` that writes later must copy it.
 */
export function webSocketDatagrams(send: (frame: Uint8Array) => void): HubSocket["sendDatagrams"] {
  const toNode = createBatchSender(nodeEncoder, send);
  const toUplink = createBatchSender(peerEncoder, send);
  return (datagrams, tags, count) => {
    if (tags === undefined) {
      for (let i = 0; i < count; i++) toNode.add(datagrams[i]);
      toNode.flush();
    } else {
      for (let i = 0; i < count; i++) toUplink.add(datagrams[i], tags[i]);
      toUplink.flush();
    }
  };
}

/** HubSocket over a hibernatable WebSocket that a Durable Object accepted. */
import type { HubSocket, SocketAttachment } from "../hub/socket.ts";
import { webSocketDatagrams } from "../hub/websocket-batches.ts";

/**
 * Wraps `ws` for the hub. workerd copies the bytes inside `send`, so the batch buffer is free
 * again at once; the attachment rides with the socket through hibernation, and pings are
 * answered by the runtime (`setWebSocketAutoResponse`), which records when.
 */
export function createDurableHubSocket(ctx: DurableObjectState, ws: WebSocket): HubSocket {
  const send = (message: Uint8Array | string): void => {
    try {
      ws.send(message);
    } catch {
      // Closing already: webSocketClose tells the hub, which then forgets the socket.
    }
  };
  return {
    sendDatagrams: webSocketDatagrams(send),
    sendControl: send,
    close(code: number, reason: string): void {
      try {
        ws.close(code, reason);
      } catch {
        // Closed already.
      }
    },
    get writable(): boolean {
      return ws.readyState === WebSocket.OPEN;
    },
    get bufferedAmount(): number {
      // workerd builds before 2026-11 have no bufferedAmount: 0 then, as HubSocket allows.
      return (ws as { bufferedAmount?: number }).bufferedAmount ?? 0;
    },
    persist(attachment: SocketAttachment): void {
      ws.serializeAttachment(attachment);
    },
    get lastPingAt(): number | undefined {
      return ctx.getWebSocketAutoResponseTimestamp(ws)?.getTime();
    },
  };
}

/**
 * A minimal UDP-over-TCP forwarder, the generic way to carry WireGuard where UDP is blocked
 * and the baseline that scenarios 2 and 4 compare the relay against. Each datagram rides one
 * TCP connection as { u16 length, datagram } (Debian's udptunnel's framing).
 *
 *   udp-over-tcp.ts client LISTEN_HOST:PORT TCP_HOST:PORT
 *       takes datagrams on LISTEN (the local WireGuard's peer endpoint), sends them over TCP,
 *       and sends what comes back to whoever sent last
 *   udp-over-tcp.ts server TCP_PORT TARGET_HOST:PORT
 *       accepts one connection at a time and exchanges its datagrams with TARGET from one socket
 *
 * It prints "ready" once listening (server) or connected (client). Queues stay short: beyond
 * MaxQueuedBytes unsent on the TCP side, datagrams are dropped and counted (as UDP would).
 */
import dgram from "node:dgram";
import net from "node:net";

const LengthSize = 2;
const MaxQueuedBytes = 256 * 1024;

function hostPort(text: string | undefined, what: string): { host: string; port: number } {
  const match = /^(.+):(\d+)$/.exec(text ?? "");
  if (!match) throw new Error(`expected HOST:PORT for ${what}, got ${JSON.stringify(text)}`);
  return { host: match[1], port: Number(match[2]) };
}

/** Moves datagrams between `udp` and `tcp`; `peer()` names where TCP's datagrams go. */
function bridge(
  udp: dgram.Socket,
  tcp: net.Socket,
  peer: () => { host: string; port: number } | undefined,
): void {
  tcp.setNoDelay(true);
  let pending: Buffer[] = [];
  let flushScheduled = false;
  let dropped = 0;
  const flush = (): void => {
    flushScheduled = false;
    if (pending.length === 0) return;
    tcp.write(pending.length === 1 ? pending[0] : Buffer.concat(pending));
    pending = [];
  };
  const onDatagram = (datagram: Buffer): void => {
    if (tcp.writableLength > MaxQueuedBytes) {
      dropped++;
      return;
    }
    const header = Buffer.allocUnsafe(LengthSize);
    header.writeUInt16BE(datagram.length);
    pending.push(header, datagram);
    // Datagrams that arrive in one turn of the event loop leave in one write.
    if (!flushScheduled) {
      flushScheduled = true;
      setImmediate(flush);
    }
  };
  udp.on("message", onDatagram);

  let buffered: Buffer = Buffer.alloc(0);
  tcp.on("data", (chunk: Buffer) => {
    buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
    let offset = 0;
    const to = peer();
    while (buffered.length - offset >= LengthSize) {
      const length = buffered.readUInt16BE(offset);
      if (buffered.length - offset - LengthSize < length) break;
      const datagram = buffered.subarray(offset + LengthSize, offset + LengthSize + length);
      if (to) udp.send(datagram, to.port, to.host);
      offset += LengthSize + length;
    }
    buffered = buffered.subarray(offset);
  });
  tcp.on("close", () => {
    udp.off("message", onDatagram);
    if (dropped > 0) process.stderr.write(`dropped ${dropped} datagrams (TCP queue full)\n`);
  });
}

const [mode, first, second] = process.argv.slice(2);
if (mode === "client") {
  const listen = hostPort(first, "LISTEN");
  const server = hostPort(second, "TCP");
  const udp = dgram.createSocket("udp4");
  let last: { host: string; port: number } | undefined;
  udp.on("message", (_datagram, from) => {
    last = { host: from.address, port: from.port };
  });
  udp.bind(listen.port, listen.host, () => {
    const tcp = net.connect(server.port, server.host, () => {
      bridge(udp, tcp, () => last);
      process.stdout.write("ready\n");
    });
    tcp.on("error", (error) => {
      process.stderr.write(`udp-over-tcp client: ${error.message}\n`);
      process.exit(1);
    });
    tcp.on("close", () => process.exit(0));
  });
} else if (mode === "server") {
  const port = Number(first);
  const target = hostPort(second, "TARGET");
  const tcpServer = net.createServer((tcp) => {
    const udp = dgram.createSocket("udp4");
    udp.bind(0, () => bridge(udp, tcp, () => target));
    tcp.on("close", () => udp.close());
    tcp.on("error", () => tcp.destroy());
  });
  tcpServer.listen(port, () => process.stdout.write("ready\n"));
} else {
  process.stderr.write(
    "usage: udp-over-tcp.ts client LISTEN_HOST:PORT TCP_HOST:PORT | server TCP_PORT TARGET_HOST:PORT\n",
  );
  process.exit(2);
}

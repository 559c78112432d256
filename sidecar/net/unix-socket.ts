/**
 * A Unix stream socket server for the sidecar's local control sockets (status, WireGuard
 * configuration): the file is root-only, removed on close and at process exit, and a file left
 * by a process that died is replaced.
 */
import { mkdirSync, rmSync } from "node:fs";
import { connect, createServer, type Socket } from "node:net";
import { dirname } from "node:path";

/** Leaves the socket file 0600: owner read and write (connect needs write), nothing else. */
const SOCKET_UMASK = 0o177;

export interface UnixSocketServer {
  readonly path: string;
  /** Stops listening, ends open connections and removes the socket file. */
  close(): Promise<void>;
}

export interface UnixSocketOptions {
  readonly path: string;
  /** Mode of the directory when it has to be created. */
  readonly directoryMode: number;
  /**
   * The error to refuse with when the file still answers (another process serves it); without
   * it, a live socket file is replaced like a stale one.
   */
  readonly inUse?: () => Error;
  readonly onConnection: (socket: Socket) => void;
}

export async function serveUnixSocket(options: UnixSocketOptions): Promise<UnixSocketServer> {
  const { path } = options;
  mkdirSync(dirname(path), { recursive: true, mode: options.directoryMode });
  if (options.inUse && (await answers(path))) throw options.inUse();
  rmSync(path, { force: true });

  const connections = new Set<Socket>();
  const server = createServer((socket) => {
    connections.add(socket);
    socket.on("close", () => connections.delete(socket));
    options.onConnection(socket);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    // Root only from the moment the file exists: these sockets name peers and addresses, and
    // one of them configures keys. listen() binds synchronously, so the umask covers the bind.
    const umask = process.umask(SOCKET_UMASK);
    try {
      server.listen(path, () => {
        server.off("error", reject);
        resolve();
      });
    } finally {
      process.umask(umask);
    }
  });
  const removeAtExit = (): void => rmSync(path, { force: true });
  process.on("exit", removeAtExit);
  return {
    path,
    async close() {
      for (const socket of connections) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      rmSync(path, { force: true });
      process.off("exit", removeAtExit);
    },
  };
}

/** Whether a process listens on the socket file at `path`. */
function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = connect(path);
    probe.once("connect", () => {
      probe.destroy();
      resolve(true);
    });
    probe.once("error", () => resolve(false));
  });
}

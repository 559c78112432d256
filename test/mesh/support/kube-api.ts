/**
 * A stand-in for the Kubernetes API server, as much of it as the mesh role uses, over HTTPS
 * with a bearer token: `GET /api/v1/nodes` (a NodeList with its resourceVersion), the same
 * path with `watch=true&resourceVersion=N` (a chunked stream of one JSON watch event per line,
 * ADDED/MODIFIED/DELETED, replaying every change after N and then following new ones; N older
 * than the kept history gets an ERROR event with a 410 Status, as the real server sends), and
 * `PATCH /api/v1/nodes/NAME` with a JSON merge patch. Each change bumps the resourceVersion.
 *
 * Clients in network namespaces cannot reach this process's loopback: `listenOnSocket` also
 * takes connections on a Unix socket (the file system is shared), which a forwarder inside a
 * namespace (test/e2e/fixtures/unix-forward.ts) carries them to, and `kubeconfigFor` names the
 * address they dial (one of `addresses`, which the certificate covers).
 *
 * It is not a real API server (none can run on this machine): it speaks the documented wire
 * forms, so it checks that the client library is driven right, not how a real server behaves
 * in every corner.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import type { ServerResponse } from "node:http";
import { createServer, type Server } from "node:https";
import {
  type AddressInfo,
  createServer as createNetServer,
  type Server as NetServer,
} from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { constantTimeEqual } from "../../../relay/app/secrets.ts";
import { makeCertificates } from "../../support/certificates.ts";

export interface FakeNode {
  metadata: {
    name: string;
    resourceVersion: string;
    annotations?: Record<string, string>;
  };
}

export interface SeenRequest {
  readonly method: string;
  readonly url: string;
  readonly authorization: string | undefined;
  readonly contentType: string | undefined;
  readonly body: string;
}

type EventType = "ADDED" | "MODIFIED" | "DELETED";

export interface KubeApiOptions {
  /** The bearer token every request must carry. */
  readonly token?: string;
  /** IP addresses clients dial besides 127.0.0.1, for the server certificate. */
  readonly addresses?: readonly string[];
}

export interface KubeApi {
  /** A kubeconfig file for this server: its CA, the token, one context. */
  readonly kubeconfig: string;
  /** A kubeconfig like `kubeconfig` whose server is `server` (https://ADDRESS:PORT). */
  kubeconfigFor(server: string): string;
  /** Also takes connections on the Unix socket `path`, until stop or close. */
  listenOnSocket(path: string): Promise<void>;
  readonly token: string;
  readonly requests: SeenRequest[];
  /** Open watch streams now. */
  readonly watchers: number;
  node(name: string): FakeNode | undefined;
  /** Creates or replaces a Node's annotations, with a watch event. */
  setNode(name: string, annotations: Record<string, string>): void;
  deleteNode(name: string): void;
  /** Changes a Node without any watch event: only a new list shows it. */
  setNodeSilently(name: string, annotations: Record<string, string>): void;
  /** Forgets history, so a watch from any older version gets 410 Gone. */
  compact(): void;
  /** Ends every open watch stream, as a server restart would. */
  dropWatches(): void;
  /** Stops listening (the API server unreachable), or listens again on the same port. */
  stop(): Promise<void>;
  start(): Promise<void>;
  close(): Promise<void>;
}

const NODES = "/api/v1/nodes";

export async function startKubeApi(options: KubeApiOptions = {}): Promise<KubeApi> {
  const token = options.token ?? "kube-test-token-4d1f";
  const dir = mkdtempSync(join(tmpdir(), "kube-api-"));
  const certs = makeCertificates(dir, ["127.0.0.1", ...(options.addresses ?? [])]);
  const nodes = new Map<string, FakeNode>();
  let version = 100;
  /** Changes after `oldest`, for watches that resume from a version. */
  let history: { version: number; type: EventType; node: FakeNode }[] = [];
  let oldest = version;
  const watches = new Set<ServerResponse>();
  const requests: SeenRequest[] = [];

  const record = (type: EventType, node: FakeNode): void => {
    history.push({ version: Number(node.metadata.resourceVersion), type, node });
    const line = `${JSON.stringify({ type, object: node })}\n`;
    for (const res of watches) res.write(line);
  };
  const change = (name: string, annotations: Record<string, string>): FakeNode => {
    version++;
    const node: FakeNode = {
      metadata: { name, resourceVersion: String(version), annotations: { ...annotations } },
    };
    nodes.set(name, node);
    return node;
  };

  const server: Server = createServer(
    { cert: readFileSync(certs.cert), key: readFileSync(certs.key) },
    (req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (chunk: Buffer) => chunks.push(chunk));
      req.on("end", () => {
        const url = new URL(req.url ?? "/", "https://kube");
        const body = Buffer.concat(chunks).toString("utf8");
        requests.push({
          method: req.method ?? "",
          url: req.url ?? "",
          authorization: req.headers.authorization,
          contentType: req.headers["content-type"],
          body,
        });
        const json = (status: number, value: unknown): void => {
          res.writeHead(status, { "content-type": "application/json" });
          res.end(JSON.stringify(value));
        };
        const status = (code: number, reason: string, message: string) => ({
          kind: "Status",
          apiVersion: "v1",
          metadata: {},
          status: "Failure",
          message,
          reason,
          code,
        });
        if (!constantTimeEqual(req.headers.authorization ?? "", `Bearer ${token}`)) {
          json(401, status(401, "Unauthorized", "Unauthorized"));
          return;
        }
        if (req.method === "GET" && url.pathname === NODES && url.searchParams.get("watch")) {
          const from = Number(url.searchParams.get("resourceVersion") ?? "0");
          res.writeHead(200, { "content-type": "application/json" });
          // As the API server does: the headers go at once, events follow as they happen.
          res.flushHeaders();
          if (from < oldest) {
            const gone = status(410, "Expired", `too old resource version: ${from} (${oldest})`);
            res.end(`${JSON.stringify({ type: "ERROR", object: gone })}\n`);
            return;
          }
          for (const event of history) {
            if (event.version > from) {
              res.write(`${JSON.stringify({ type: event.type, object: event.node })}\n`);
            }
          }
          watches.add(res);
          res.on("close", () => watches.delete(res));
          return;
        }
        if (req.method === "GET" && url.pathname === NODES) {
          json(200, {
            kind: "NodeList",
            apiVersion: "v1",
            metadata: { resourceVersion: String(version) },
            items: [...nodes.values()],
          });
          return;
        }
        const patched = /^\/api\/v1\/nodes\/([^/]+)$/.exec(url.pathname);
        if (req.method === "PATCH" && patched !== null) {
          const name = decodeURIComponent(patched[1]);
          const node = nodes.get(name);
          if (node === undefined) {
            json(404, status(404, "NotFound", `nodes "${name}" not found`));
            return;
          }
          if (req.headers["content-type"] !== "application/merge-patch+json") {
            json(415, status(415, "UnsupportedMediaType", "expected a merge patch"));
            return;
          }
          const patch = JSON.parse(body) as {
            metadata?: { annotations?: Record<string, string | null> };
          };
          const annotations = { ...node.metadata.annotations };
          for (const [key, value] of Object.entries(patch.metadata?.annotations ?? {})) {
            if (value === null) delete annotations[key];
            else annotations[key] = value;
          }
          const updated = change(name, annotations);
          record("MODIFIED", updated);
          json(200, updated);
          return;
        }
        json(404, status(404, "NotFound", `no route ${req.method} ${url.pathname}`));
      });
    },
  );
  const listen = (port: number): Promise<void> =>
    new Promise((resolve) => server.listen(port, "127.0.0.1", resolve));
  await listen(0);
  const port = (server.address() as AddressInfo).port;
  // Connections from the socket are handed to the HTTPS server, which does TLS and HTTP on them.
  const socketServer: NetServer = createNetServer((socket) => server.emit("connection", socket));
  let socketPath: string | undefined;
  const listenOnSocket = (path: string): Promise<void> => {
    socketPath = path;
    return new Promise((resolve, reject) => {
      socketServer.once("error", reject);
      socketServer.listen(path, () => {
        socketServer.off("error", reject);
        resolve();
      });
    });
  };
  const stopListening = async (): Promise<void> => {
    for (const res of watches) res.destroy();
    watches.clear();
    server.closeAllConnections();
    if (socketServer.listening) {
      await new Promise<void>((resolve) => socketServer.close(() => resolve()));
    }
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };

  const kubeconfigText = (server: string): string =>
    [
      "apiVersion: v1",
      "kind: Config",
      "clusters:",
      "- name: test",
      "  cluster:",
      `    server: ${server}`,
      `    certificate-authority: ${certs.ca}`,
      "users:",
      "- name: member",
      "  user:",
      `    token: ${token}`,
      "contexts:",
      "- name: test",
      "  context:",
      "    cluster: test",
      "    user: member",
      "current-context: test",
      "",
    ].join("\n");
  let kubeconfigs = 0;
  const kubeconfigFor = (server: string): string => {
    const file = join(dir, `kubeconfig-${kubeconfigs++}`);
    writeFileSync(file, kubeconfigText(server));
    return file;
  };

  return {
    kubeconfig: kubeconfigFor(`https://127.0.0.1:${port}`),
    kubeconfigFor,
    listenOnSocket,
    token,
    requests,
    get watchers() {
      return watches.size;
    },
    node: (name) => nodes.get(name),
    setNode(name, annotations) {
      const existed = nodes.has(name);
      record(existed ? "MODIFIED" : "ADDED", change(name, annotations));
    },
    deleteNode(name) {
      const node = nodes.get(name);
      assert.ok(node, `no Node ${name} to delete`);
      nodes.delete(name);
      version++;
      record("DELETED", { metadata: { ...node.metadata, resourceVersion: String(version) } });
    },
    setNodeSilently(name, annotations) {
      change(name, annotations);
    },
    compact() {
      history = [];
      oldest = version + 1;
    },
    dropWatches() {
      for (const res of watches) res.destroy();
      watches.clear();
    },
    stop: stopListening,
    async start() {
      await listen(port);
      if (socketPath !== undefined) await listenOnSocket(socketPath);
    },
    close: stopListening,
  };
}

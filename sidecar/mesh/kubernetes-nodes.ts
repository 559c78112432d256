/**
 * The Kubernetes source of mesh peers: lists and watches the cluster's Nodes through
 * @kubernetes/client-node (its CoreV1Api for the list and the patch, its Watch for the stream)
 * and hands each Node's peer (node-annotations.ts) to the member. Optionally writes this
 * member's own annotations on its own Node, as Talos does for every node.
 *
 * The loop: list (the whole state, with its resourceVersion), then watch from that version;
 * a watch that ends quietly (the server's or the library's timeout) is resumed from the last
 * version seen. It lists again on 410 Gone (the version is too old), on an ERROR event, and
 * every `resyncMs` (so a lost event is corrected). A failed list or watch is logged and tried
 * again after RETRY_MIN_MS, doubling to RETRY_MAX_MS; the member's relay source is untouched
 * meanwhile, and peers from Kubernetes are kept as last seen.
 */
import {
  CoreV1Api,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
  type V1Node,
  Watch,
} from "@kubernetes/client-node";
import type { Prefix } from "../../shared/net/ip.ts";
import type { Logger } from "../log.ts";
import {
  annotationsOf,
  MESH_ANNOTATIONS,
  NodeAnnotationError,
  type NodePeer,
  peerFromAnnotations,
} from "./node-annotations.ts";

export const NODES_PATH = "/api/v1/nodes";
export const DEFAULT_RESYNC_MS = 300_000;
const RETRY_MIN_MS = 1_000;
const RETRY_MAX_MS = 30_000;
/** A watch that ends sooner than this without an event counts as a failure (no hot loop). */
const MIN_QUIET_WATCH_MS = 1_000;
const HTTP_GONE = 410;
const CLOSE_WAIT_MS = 1_000;

export interface NodeWatchOptions {
  readonly prefix: Prefix;
  /** This host's Node: not a peer, and where `publish` writes. */
  readonly nodeName: string;
  /** This member's own description to write on its Node; undefined: write nothing. */
  readonly publish?: () => NodePeer;
  /** A Node's peer changed; undefined: it has none (deleted, unannotated, or malformed). */
  onPeer(node: string, peer: NodePeer | undefined): void;
  readonly log: Logger;
  readonly resyncMs?: number;
}

export interface NodeWatch {
  /** "listing", "watching", "retrying" or "closed". */
  readonly state: string;
  readonly lastError: string | undefined;
  /** Lists completed; each one resynchronises every Node. */
  readonly lists: number;
  close(): Promise<void>;
}

/**
 * Loads kubeconfig `files` (`:`-separated as in KUBECONFIG, the first one's context used);
 * throws naming the files and the reason when they are unusable.
 */
export function loadKubeConfig(files: string): KubeConfig {
  const [first, ...rest] = files.split(":").filter((file) => file !== "");
  if (first === undefined) throw new Error("no kubeconfig file given");
  const config = new KubeConfig();
  try {
    config.loadFromFile(first);
    for (const file of rest) {
      const more = new KubeConfig();
      more.loadFromFile(file);
      config.mergeConfig(more, true);
    }
  } catch (cause) {
    throw new Error(`kubeconfig ${files}: ${(cause as Error).message}`, { cause });
  }
  const cluster = config.getCurrentCluster();
  if (cluster === null) {
    throw new Error(
      `kubeconfig ${files}: no cluster for the current context ${JSON.stringify(config.getCurrentContext())}; set current-context to a context whose cluster is listed`,
    );
  }
  return config;
}

export function watchKubernetesNodes(config: KubeConfig, options: NodeWatchOptions): NodeWatch {
  const { log } = options;
  const resyncMs = options.resyncMs ?? DEFAULT_RESYNC_MS;
  const api = config.makeApiClient(CoreV1Api);
  const watch = new Watch(config);
  /** Each Node's mesh annotations as last handled, to pass on only changes. */
  const seen = new Map<string, string>();
  /** The last complaint about each malformed Node, said once until it changes. */
  const complaints = new Map<string, string>();
  let state = "listing";
  let lastError: string | undefined;
  let lists = 0;
  let closed = false;
  let aborter: AbortController | undefined;
  let wake: (() => void) | undefined;
  let publishing = false;
  let publishComplaint: string | undefined;

  const sleep = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });

  const signature = (node: V1Node): string =>
    JSON.stringify(MESH_ANNOTATIONS.map((key) => node.metadata?.annotations?.[key] ?? null));

  const forget = (name: string): void => {
    if (closed) return;
    complaints.delete(name);
    if (seen.delete(name)) options.onPeer(name, undefined);
  };

  const handle = (node: V1Node): void => {
    const name = node.metadata?.name;
    if (name === undefined || closed) return;
    if (name === options.nodeName) {
      publishOwn(node);
      return;
    }
    const now = signature(node);
    if (seen.get(name) === now) return;
    let peer: NodePeer | undefined;
    try {
      peer = peerFromAnnotations(node.metadata?.annotations, options.prefix);
    } catch (error) {
      if (!(error instanceof NodeAnnotationError)) throw error;
      if (complaints.get(name) !== error.message) {
        complaints.set(name, error.message);
        log.warn("Kubernetes Node skipped: its mesh annotations are malformed", {
          node: name,
          error: error.message,
        });
      }
    }
    if (peer !== undefined) complaints.delete(name);
    const had = seen.has(name);
    seen.set(name, now);
    if (peer !== undefined || had) options.onPeer(name, peer);
  };

  /** Writes this member's annotations on its Node when they differ from what it holds. */
  const publishOwn = (node: V1Node): void => {
    if (options.publish === undefined || publishing) return;
    const wanted = annotationsOf(options.publish());
    const held = node.metadata?.annotations ?? {};
    const differs = Object.entries(wanted).some(
      ([key, value]) => (held[key] ?? "") !== value || (value === "" && key in held),
    );
    if (!differs) return;
    // As Talos does: an empty value removes the annotation (null in a merge patch).
    const annotations: Record<string, string | null> = {};
    for (const [key, value] of Object.entries(wanted))
      annotations[key] = value === "" ? null : value;
    publishing = true;
    api
      .patchNode(
        { name: options.nodeName, body: { metadata: { annotations } } },
        setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
      )
      .then(
        () => {
          publishComplaint = undefined;
          log.info("mesh annotations written on this host's Node", { node: options.nodeName });
        },
        (error: unknown) => {
          const message = describe(error);
          if (publishComplaint !== message) {
            publishComplaint = message;
            log.warn(
              "mesh annotations not written on this host's Node; other members find it through the relay only (tried again at the next list). Grant this kubeconfig's user patch on nodes, or check --node-name",
              { node: options.nodeName, error: message },
            );
          }
        },
      )
      .finally(() => {
        publishing = false;
      });
  };

  /** Lists every Node; returns the list's resourceVersion. */
  const list = async (): Promise<string> => {
    state = "listing";
    const nodes = await api.listNode();
    const names = new Set<string>();
    for (const node of nodes.items) {
      handle(node);
      if (node.metadata?.name !== undefined) names.add(node.metadata.name);
    }
    for (const name of [...seen.keys()]) if (!names.has(name)) forget(name);
    if (!names.has(options.nodeName) && options.publish !== undefined && lists === 0) {
      log.warn("this host's Node is not in the cluster; its mesh annotations are not written", {
        node: options.nodeName,
        hint: "set --node-name to the name `kubectl get nodes` shows for this host",
      });
    }
    lists++;
    return nodes.metadata?.resourceVersion ?? "";
  };

  /** Watches from `version` until the stream ends; returns the version to resume from, or "". */
  const watchFrom = (version: string, until: number): Promise<string> =>
    new Promise((resolve, reject) => {
      let resume = version;
      let relist = false;
      let events = 0;
      const started = Date.now();
      const resync = setTimeout(() => aborter?.abort(), Math.max(0, until - Date.now()));
      const finish = (error: unknown): void => {
        clearTimeout(resync);
        aborter = undefined;
        if (closed || relist || Date.now() >= until || isGone(error)) resolve("");
        else if (error !== null && error !== undefined && !isTimeout(error)) reject(error);
        else if (events === 0 && Date.now() - started < MIN_QUIET_WATCH_MS) {
          reject(new Error("the watch ended at once without an event"));
        } else resolve(resume);
      };
      state = "watching";
      watch
        .watch(
          NODES_PATH,
          { resourceVersion: version, allowWatchBookmarks: true },
          (type: string, object: V1Node & { code?: number }) => {
            events++;
            switch (type) {
              case "ADDED":
              case "MODIFIED":
                handle(object);
                break;
              case "DELETED":
                if (object.metadata?.name !== undefined) forget(object.metadata.name);
                break;
              case "ERROR":
                // A Status object: most often 410, the version expired. Any error: list again.
                relist = true;
                aborter?.abort();
                return;
              default:
                break;
            }
            const next = object.metadata?.resourceVersion;
            if (next !== undefined) resume = next;
          },
          finish,
        )
        .then((controller) => {
          aborter = controller;
          // The resync timer may have fired while the request was being made.
          if (closed || Date.now() >= until) controller.abort();
        }, reject);
    });

  const run = async (): Promise<void> => {
    let retryMs = RETRY_MIN_MS;
    while (!closed) {
      try {
        let version = await list();
        retryMs = RETRY_MIN_MS;
        if (lastError !== undefined) {
          log.info("Kubernetes Nodes listed again", { nodes: seen.size });
          lastError = undefined;
        }
        const until = Date.now() + resyncMs;
        while (!closed && version !== "") version = await watchFrom(version, until);
      } catch (error) {
        if (closed) break;
        const message = describe(error);
        state = "retrying";
        if (lastError !== message) {
          log.warn("Kubernetes API unreachable or refusing; peers from it kept as last seen", {
            error: message,
            retryInSeconds: retryMs / 1000,
          });
        }
        lastError = message;
        await sleep(retryMs);
        retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
      }
    }
    state = "closed";
  };
  const running = run();

  return {
    get state() {
      return state;
    },
    get lastError() {
      return lastError;
    },
    get lists() {
      return lists;
    },
    async close() {
      closed = true;
      aborter?.abort();
      wake?.();
      // A list in flight cannot be aborted; nothing it returns is handled after this.
      await Promise.race([running, new Promise((resolve) => setTimeout(resolve, CLOSE_WAIT_MS))]);
    },
  };
}

function isGone(error: unknown): boolean {
  const status = error as { statusCode?: number; code?: number } | null;
  return status?.statusCode === HTTP_GONE || status?.code === HTTP_GONE;
}

function isTimeout(error: unknown): boolean {
  return (error as { name?: string }).name === "TimeoutError";
}

/** An error in one line: the API's status and message, never request headers. */
function describe(error: unknown): string {
  const status = error as { code?: number; statusCode?: number; body?: unknown } | null;
  const code = status?.code ?? status?.statusCode;
  const body = status?.body as { message?: string } | string | undefined;
  const detail =
    typeof body === "object" && body?.message !== undefined
      ? body.message
      : (error as Error).message?.split("\n")[0];
  return typeof code === "number" ? `HTTP ${code}: ${detail}` : String(detail ?? error);
}

/**
 * Mesh clusters on Node: in memory, one MeshCluster per cluster id, records swept every
 * MESH_SWEEP_INTERVAL_MS.
 *
 * Memory, not SQLite: a record lives RECORD_TTL_MS unless its member publishes again, and every
 * member publishes on each (re)connect and every REPUBLISH_INTERVAL_MS. After a relay restart
 * the cluster is whole again as soon as its members reconnect, so persisting records would only
 * keep expired state on disk.
 */
import type { WebSocket } from "ws";
import { CloseCode, LIVENESS_TIMEOUT_MS } from "../../shared/tunnel/frame.ts";
import { createRateLimiter } from "../app/rate-limit.ts";
import {
  MeshCluster,
  type MeshLimits,
  type MeshRecordStore,
  type MeshSocket,
  type StoredRecord,
} from "../mesh/cluster.ts";
import { MESH_RATE_LIMIT, type MeshDirectory, type MeshRuntime } from "../mesh/routes.ts";
import type { WebSocketUpgrades } from "./websocket.ts";

export const MESH_SWEEP_INTERVAL_MS = 10_000;
/** Clusters one relay process holds; an id beyond it is refused until records expire. */
export const MAX_MESH_CLUSTERS = 10_000;

export interface NodeMeshDirectory extends MeshDirectory {
  /** Stored records of a cluster, as the relay holds them (sealed), for operators and tests. */
  stored(id: string): readonly StoredRecord[];
  close(): void;
}

export interface NodeMeshOptions {
  readonly limits?: Partial<MeshLimits>;
  readonly sweepIntervalMs?: number;
}

export function createNodeMeshDirectory(
  upgrades: () => WebSocketUpgrades,
  options: NodeMeshOptions = {},
): NodeMeshDirectory {
  const limiter = createRateLimiter(MESH_RATE_LIMIT);
  const clusters = new Map<string, MeshRuntime>();
  const sweep = setInterval(() => {
    for (const [id, runtime] of clusters) {
      runtime.cluster.closeSilent(LIVENESS_TIMEOUT_MS);
      if (runtime.cluster.sweep() === undefined && runtime.cluster.connected === 0) {
        clusters.delete(id);
      }
    }
  }, options.sweepIntervalMs ?? MESH_SWEEP_INTERVAL_MS);
  sweep.unref();

  const create = (): MeshRuntime => {
    const records = new Map<string, StoredRecord>();
    const store: MeshRecordStore = {
      all: () => [...records.values()],
      put: (record) => records.set(record.member, record),
      delete: (member) => records.delete(member),
    };
    const cluster = new MeshCluster({
      store,
      limits: options.limits,
      now: Date.now,
      publishLimiter: limiter,
    });
    return {
      cluster,
      acceptWebSocket(request, admission) {
        return upgrades().adopt(request, (ws) => {
          if ("refuse" in admission) {
            ws.close(admission.refuse.code, admission.refuse.reason);
            return;
          }
          const socket = wsMeshSocket(ws);
          ws.on("message", (data: Buffer, isBinary: boolean) => {
            cluster.message(socket, isBinary ? data : data.toString("utf8"));
          });
          ws.on("close", () => cluster.closed(socket));
          ws.on("error", () => cluster.closed(socket));
          cluster.connect(socket, admission.member, admission.observed, admission.address);
        });
      },
    };
  };

  return {
    limiter,
    cluster(id) {
      let runtime = clusters.get(id);
      if (runtime === undefined) {
        if (clusters.size >= MAX_MESH_CLUSTERS) {
          throw new Error(`relay holds its limit of ${MAX_MESH_CLUSTERS} mesh clusters`);
        }
        runtime = create();
        clusters.set(id, runtime);
      }
      return runtime;
    },
    stored(id) {
      return clusters.get(id)?.cluster.records() ?? [];
    },
    close() {
      clearInterval(sweep);
      for (const runtime of clusters.values())
        runtime.cluster.closeAll(CloseCode.GoingAway, "relay shutting down");
      clusters.clear();
    },
  };
}

function wsMeshSocket(ws: WebSocket): MeshSocket {
  return {
    send(frame) {
      // ws may write after send returns and the cluster reuses its batch buffer: copy binary.
      if (ws.readyState === ws.OPEN)
        ws.send(typeof frame === "string" ? frame : Buffer.from(frame));
    },
    close(code, reason) {
      if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) ws.close(code, reason);
    },
    get bufferedAmount() {
      return ws.bufferedAmount;
    },
  };
}

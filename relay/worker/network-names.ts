/**
 * Whether a network exists, asked before a request may wake the network's Durable Object. Any
 * name that looks valid would otherwise construct an object, which builds its schema (and, with
 * its rate limiter in its own memory, budgets nothing across guesses); the directory object
 * (directory-object.ts) knows every network and answers instead.
 *
 * Each isolate remembers the names it found (networks are never deleted, so a found name stays
 * true); a name not found is asked again every time, so a network is reachable the moment its
 * creation announced it.
 */
import { DIRECTORY_NAME, type Env } from "./env.ts";

/** Found names remembered per isolate; past this many the memory starts again. */
const KNOWN_NETWORKS_CAPACITY = 4096;

const known = new Set<string>();
/** Names just found missing, by requests the edge is answering now (edge.ts reads them). */
const missing = new Map<string, number>();

/**
 * Whether network `name` exists. A miss is counted by the directory under `route` (undefined:
 * not counted there, as for Provision, whose refusal is counted by its result code).
 */
export async function networkExists(env: Env, name: string, route?: string): Promise<boolean> {
  if (known.has(name)) return true;
  const found = await env.DIRECTORY.get(env.DIRECTORY.idFromName(DIRECTORY_NAME)).has(name, route);
  if (found) {
    if (known.size >= KNOWN_NETWORKS_CAPACITY) known.clear();
    known.add(name);
  }
  return found;
}

/** Runs `answer` with `name` known to be missing, so the edge answers it without asking again. */
export async function whileMissing<T>(name: string, answer: () => Promise<T>): Promise<T> {
  missing.set(name, (missing.get(name) ?? 0) + 1);
  try {
    return await answer();
  } finally {
    const left = (missing.get(name) ?? 1) - 1;
    if (left > 0) missing.set(name, left);
    else missing.delete(name);
  }
}

/** Whether a request being answered now found `name` missing. */
export function isKnownMissing(name: string): boolean {
  return missing.has(name);
}

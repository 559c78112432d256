/**
 * The configuration socket sets keys, so no other user may connect to it even for an instant:
 * it must be 0600 from the moment it is bound, not only after a chmod that follows listen().
 * The test binds under a permissive umask (000, as a careless service manager might leave it)
 * and reads the socket file's mode right after the bind, before anything else can run.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, it } from "node:test";
import { serveUapi } from "../../sidecar/wireguard/uapi-socket.ts";

const dir = mkdtempSync(join(tmpdir(), "uapi-mode-"));
after(() => rmSync(dir, { recursive: true, force: true }));

it("the UAPI socket is 0600 from the moment it is bound, whatever the umask", async () => {
  const listen = net.Server.prototype.listen;
  const modesAtBind: number[] = [];
  const previousUmask = process.umask(0o000);
  // Node binds a Unix socket inside listen(); stat it as soon as that returns.
  net.Server.prototype.listen = function (this: net.Server, ...args: unknown[]) {
    const result = (listen as (...a: unknown[]) => net.Server).apply(this, args);
    if (typeof args[0] === "string") modesAtBind.push(statSync(args[0]).mode & 0o777);
    return result;
  } as typeof listen;
  let socket: Awaited<ReturnType<typeof serveUapi>> | undefined;
  try {
    socket = await serveUapi("wgmode", () => "errno=0\n\n", dir);
  } finally {
    net.Server.prototype.listen = listen;
    process.umask(previousUmask);
  }
  try {
    assert.deepEqual(
      modesAtBind.map((mode) => mode.toString(8)),
      ["600"],
      "mode of the socket file right after bind",
    );
    assert.equal((statSync(socket.path).mode & 0o777).toString(8), "600");
  } finally {
    await socket.close();
  }
});

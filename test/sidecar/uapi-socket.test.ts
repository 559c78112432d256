import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { serveUapi } from "../../sidecar/wireguard/uapi-socket.ts";

/** Sends `chunks` one by one on a new connection and collects everything until the server ends. */
function exchange(path: string, chunks: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(path);
    let reply = "";
    socket.setEncoding("utf8");
    socket.on("data", (data: string) => {
      reply += data;
    });
    socket.on("end", () => resolve(reply));
    socket.on("error", reject);
    socket.on("connect", async () => {
      for (const chunk of chunks) {
        socket.write(chunk);
        await new Promise((r) => setImmediate(r));
      }
      socket.end();
    });
  });
}

describe("configuration socket", () => {
  const dir = mkdtempSync(join(tmpdir(), "uapi-"));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("answers each request on a connection in order, however the bytes arrive", async () => {
    const seen: string[] = [];
    const server = await serveUapi(
      "wgx",
      (request) => {
        seen.push(request);
        return request.startsWith("get=1") ? "listen_port=1\nerrno=0\n\n" : "errno=0\n\n";
      },
      dir,
    );
    try {
      const text = "set=1\nlisten_port=1\n\nget=1\n\n";
      const chunks = text.match(/[\s\S]{1,2}/g)!;
      assert.equal(await exchange(server.path, chunks), "errno=0\n\nlisten_port=1\nerrno=0\n\n");
      assert.deepEqual(seen, ["set=1\nlisten_port=1\n\n", "get=1\n\n"]);
    } finally {
      await server.close();
    }
  });

  it("reports a handler failure as errno=-5 and keeps serving", async () => {
    const server = await serveUapi(
      "wgx",
      () => {
        throw new Error("boom");
      },
      dir,
    );
    try {
      assert.equal(await exchange(server.path, ["get=1\n\n"]), "errno=-5\n\n");
      assert.equal(await exchange(server.path, ["get=1\n\n"]), "errno=-5\n\n");
    } finally {
      await server.close();
    }
  });

  it("replaces a stale socket file, refuses a live one, and removes its own on close", async () => {
    const path = join(dir, "wgy.sock");
    writeFileSync(path, "");
    const server = await serveUapi("wgy", () => "errno=0\n\n", dir);
    await assert.rejects(
      serveUapi("wgy", () => "", dir),
      /wgy\.sock is in use: another WireGuard process serves interface wgy/,
    );
    await server.close();
    assert.equal(existsSync(path), false);
  });
});

/**
 * Node identity and the state directory: where the UUID comes from, that the unique token and
 * the server key survive restarts, and that the server key is what `wg pubkey` says it is.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { formatKey, publicKey } from "../../shared/siderolink/keys.ts";
import { resolveIdentity, uuidFromMachineId } from "../../sidecar/identity.ts";
import { loadOrCreateServerKey, SERVER_KEY_FILE, UNIQUE_TOKEN_FILE } from "../../sidecar/state.ts";

const root = mkdtempSync(join(tmpdir(), "sidecar-identity-"));
after(() => rmSync(root, { recursive: true, force: true }));
let dirs = 0;
const fresh = (): string => join(root, `d${dirs++}`);

function sources(productUuid: string | undefined, machineId: string | undefined) {
  const dir = fresh();
  execFileSync("mkdir", ["-p", dir]);
  const productUuidPath = join(dir, "product_uuid");
  const machineIdPath = join(dir, "machine-id");
  if (productUuid !== undefined) writeFileSync(productUuidPath, `${productUuid}\n`);
  if (machineId !== undefined) writeFileSync(machineIdPath, `${machineId}\n`);
  return { productUuidPath, machineIdPath };
}

describe("node identity", () => {
  it("takes the DMI product UUID, lower-cased", () => {
    const identity = resolveIdentity({
      stateDirectory: fresh(),
      sources: sources("4C4C4544-0042-3510-8052-B4C04F384D32", "0123456789abcdef0123456789abcdef"),
    });
    assert.equal(identity.nodeUuid, "4c4c4544-0042-3510-8052-b4c04f384d32");
    assert.equal(identity.uuidSource, "dmi");
  });

  it("falls back to a UUID derived from /etc/machine-id when the DMI one is a placeholder or absent", () => {
    const machineId = "0123456789abcdef0123456789abcdef";
    // SHA-256("siderolink-sidecar node uuid\n" + id), first 16 bytes, version 8 and variant bits,
    // computed with sha256sum rather than the code under test.
    const digest = execFileSync(
      "sh",
      ["-c", `printf 'siderolink-sidecar node uuid\\n%s' "$0" | sha256sum`, machineId],
      {
        encoding: "utf8",
      },
    ).slice(0, 32);
    const bytes = Buffer.from(digest, "hex");
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const hex = bytes.toString("hex");
    const expected = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
    for (const dmi of [
      "00000000-0000-0000-0000-000000000000",
      "03000200-0400-0500-0006-000700080009",
      undefined,
    ]) {
      const identity = resolveIdentity({
        stateDirectory: fresh(),
        sources: sources(dmi, machineId),
      });
      assert.equal(identity.uuidSource, "machine-id");
      assert.equal(identity.nodeUuid, expected);
    }
    assert.equal(uuidFromMachineId(machineId), expected);
  });

  it("an explicit UUID wins, and a malformed one is refused by name", () => {
    const identity = resolveIdentity({
      uuid: "AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE",
      stateDirectory: fresh(),
      sources: sources("4c4c4544-0042-3510-8052-b4c04f384d32", undefined),
    });
    assert.equal(identity.nodeUuid, "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee");
    assert.equal(identity.uuidSource, "flag");
    assert.throws(
      () => resolveIdentity({ uuid: "not-a-uuid", stateDirectory: fresh() }),
      /--node-uuid "not-a-uuid" is not a UUID/,
    );
  });

  it("with neither source it asks for --node-uuid", () => {
    assert.throws(
      () => resolveIdentity({ stateDirectory: fresh(), sources: sources(undefined, "short") }),
      /no usable machine UUID.*pass --node-uuid/,
    );
  });

  it("generates the unique token once, keeps it private in the state dir, and returns it again", () => {
    const state = fresh();
    const src = sources("4c4c4544-0042-3510-8052-b4c04f384d32", undefined);
    const first = resolveIdentity({ stateDirectory: state, sources: src });
    const second = resolveIdentity({ stateDirectory: state, sources: src });
    assert.equal(second.uniqueToken, first.uniqueToken);
    assert.match(first.uniqueToken, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(readFileSync(join(state, UNIQUE_TOKEN_FILE), "utf8").trim(), first.uniqueToken);
    assert.equal(statSync(join(state, UNIQUE_TOKEN_FILE)).mode & 0o777, 0o600);
    assert.equal(statSync(state).mode & 0o777, 0o700);
    const other = resolveIdentity({ stateDirectory: fresh(), sources: src });
    assert.notEqual(other.uniqueToken, first.uniqueToken);
    const given = resolveIdentity({
      uniqueToken: "from-config",
      stateDirectory: fresh(),
      sources: src,
    });
    assert.equal(given.uniqueToken, "from-config");
  });
});

describe("server key", () => {
  it("is created once, persisted, and is the private key of the public key `wg pubkey` derives", () => {
    const state = fresh();
    const key = loadOrCreateServerKey(state);
    assert.deepEqual(loadOrCreateServerKey(state), key);
    const text = readFileSync(join(state, SERVER_KEY_FILE), "utf8").trim();
    assert.equal(statSync(join(state, SERVER_KEY_FILE)).mode & 0o777, 0o600);
    const wgPublic = execFileSync("wg", ["pubkey"], {
      input: `${text}\n`,
      encoding: "utf8",
    }).trim();
    assert.equal(formatKey(publicKey(key)), wgPublic);
  });

  it("a damaged key file is an error, never silently replaced", () => {
    const state = fresh();
    loadOrCreateServerKey(state);
    writeFileSync(join(state, SERVER_KEY_FILE), "garbage\n");
    assert.throws(() => loadOrCreateServerKey(state), /does not hold a WireGuard private key/);
    assert.equal(readFileSync(join(state, SERVER_KEY_FILE), "utf8"), "garbage\n");
  });
});

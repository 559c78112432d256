import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseSideroLinkConfig } from "../../shared/siderolink/config.ts";
import { SideroLinkError } from "../../shared/siderolink/errors.ts";

const document = (apiUrl: string, extra = "") =>
  `apiVersion: v1alpha1\nkind: SideroLinkConfig\napiUrl: ${apiUrl}\n${extra}`;

describe("SideroLinkConfig documents", () => {
  it("reads Talos's reference document", () => {
    // Talos's marshalled form (pkg/machinery/config/types/siderolink/testdata/document.yaml).
    const config = parseSideroLinkConfig(
      document("https://siderolink.api/?jointoken=secret&user=alice"),
    );
    assert.equal(config.apiUrl, "https://siderolink.api/?jointoken=secret&user=alice");
    assert.equal(config.api.host, "siderolink.api");
    assert.equal(config.api.port, 443);
    assert.equal(config.api.tls, true);
    assert.equal(config.api.joinToken, "secret");
    assert.equal(config.uniqueToken, undefined);
  });

  it("finds the document among the other documents of a machine configuration", () => {
    const machineConfig = [
      "version: v1alpha1",
      "machine:",
      "  type: worker",
      "cluster:",
      "  controlPlane:",
      "    endpoint: https://[fdae:41e4:649b:9303::1]:10000",
      "---",
      "apiVersion: v1alpha1",
      "kind: EventSinkConfig",
      "endpoint: '[fdae:41e4:649b:9303::1]:8091'",
      "---",
      "# the management link",
      "apiVersion: v1alpha1",
      "kind: SideroLinkConfig",
      "apiUrl: grpc://10.5.0.1:8090?jointoken=my-token&grpc_tunnel=true",
      "uniqueToken: 7a1f0c",
      "---",
      "apiVersion: v1alpha1",
      "kind: KmsgLogConfig",
      "name: omni-kmsg",
      "url: tcp://[fdae:41e4:649b:9303::1]:8092",
      "",
    ].join("\n");
    const config = parseSideroLinkConfig(machineConfig);
    assert.equal(config.api.authority, "10.5.0.1:8090");
    assert.equal(config.api.tls, false);
    assert.equal(config.api.joinToken, "my-token");
    assert.equal(config.api.grpcTunnel, true);
    assert.equal(config.uniqueToken, "7a1f0c");
  });

  it("accepts what Talos's validation accepts", () => {
    for (const apiUrl of [
      "https://siderolink.api:434/?jointoken=foo",
      "grpc://siderolink.api",
      "HTTPS://siderolink.api",
      "'https://[fd00::1]:8099'",
    ]) {
      assert.ok(parseSideroLinkConfig(`---\n${document(apiUrl)}\n---\n`).api.host, apiUrl);
    }
  });

  it("refuses bad documents, naming the field and what it accepts", () => {
    const cases: [string, string, "missing" | "invalid", RegExp][] = [
      // Talos's own validation cases.
      [document('""'), "apiUrl", "missing", /^apiUrl: required/],
      [
        document("http://siderolink.api/"),
        "apiUrl",
        "invalid",
        /scheme must be https:\/\/ or grpc:\/\//,
      ],
      [
        document("grpc://siderolink.api/path?jointoken=foo"),
        "apiUrl",
        "invalid",
        /path must be empty or "\/", got "\/path"/,
      ],
      // And the rest.
      ["apiVersion: v1alpha1\nkind: SideroLinkConfig\n", "apiUrl", "missing", /required/],
      [
        document("siderolink.api:443"),
        "apiUrl",
        "invalid",
        /scheme must be https:\/\/ or grpc:\/\//,
      ],
      [document("[1, 2]"), "apiUrl", "invalid", /must be a string URL/],
      [document("https://siderolink.api:0"), "apiUrl", "invalid", /^apiUrl: port "0"/],
      [
        document("https://siderolink.api", "uniqueToken: [a]"),
        "uniqueToken",
        "invalid",
        /must be a string/,
      ],
      [
        document("https://siderolink.api", "joinToken: x"),
        "joinToken",
        "invalid",
        /unknown field in SideroLinkConfig; it has apiVersion, kind, apiUrl, uniqueToken/,
      ],
      [
        document("https://siderolink.api").replace("v1alpha1", "v1alpha2"),
        "apiVersion",
        "invalid",
        /supports apiVersion v1alpha1 only/,
      ],
      [
        document("https://siderolink.api").replace("apiVersion: v1alpha1\n", ""),
        "apiVersion",
        "missing",
        /v1alpha1/,
      ],
      [
        `${document("https://a")}\n---\n${document("https://b")}`,
        "kind",
        "invalid",
        /more than one SideroLinkConfig document/,
      ],
      [
        "version: v1alpha1\nmachine: {}\n---\napiVersion: v1alpha1\nkind: KmsgLogConfig\n",
        "kind",
        "missing",
        /no SideroLinkConfig document among 2; add one with apiVersion: v1alpha1/,
      ],
      ["", "kind", "missing", /among 0/],
    ];
    for (const [text, field, code, message] of cases) {
      assert.throws(
        () => parseSideroLinkConfig(text),
        (error: unknown) => {
          assert.ok(error instanceof SideroLinkError);
          assert.equal(error.field, field);
          assert.equal(error.code, code);
          assert.match(error.message, message);
          return true;
        },
        text,
      );
    }
  });

  it("reports YAML errors by place, without quoting the source", () => {
    const text = `${document("https://siderolink.api?jointoken=s3cr3t")}apiUrl: https://again?jointoken=s3cr3t\n`;
    assert.throws(
      () => parseSideroLinkConfig(`version: v1alpha1\n---\n${text}`),
      (error: unknown) => {
        assert.ok(error instanceof SideroLinkError);
        assert.equal(error.field, "yaml");
        assert.match(
          error.message,
          /^yaml: document 2: Map keys must be unique at line \d+, column \d+$/,
        );
        assert.ok(!error.message.includes("s3cr3t"));
        return true;
      },
    );
  });
});

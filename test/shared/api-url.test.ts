import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type ApiUrl, parseApiUrl } from "../../shared/siderolink/api-url.ts";
import { SideroLinkError } from "../../shared/siderolink/errors.ts";

type Expected = Partial<ApiUrl> & { joinToken?: string };

describe("siderolink.api URLs", () => {
  it("reads them as Talos does", () => {
    const cases: [string, Expected][] = [
      // Talos's own cases (internal/pkg/endpoint tests, siderolink controller tests).
      [
        "grpc://10.5.0.2:3445?jointoken=ttt",
        { host: "10.5.0.2", port: 3445, tls: false, joinToken: "ttt", grpcTunnel: false },
      ],
      [
        "https://10.5.0.2:3445?jointoken=ttt&jointoken=xxx",
        { host: "10.5.0.2", port: 3445, tls: true, joinToken: "ttt" },
      ],
      ["https://10.5.0.2?jointoken=ttt&jointoken=xxx", { port: 443, tls: true, joinToken: "ttt" }],
      [
        "10.5.0.2:3445?jointoken=ttt",
        { scheme: "grpc", host: "10.5.0.2", port: 3445, tls: false, joinToken: "ttt" },
      ],
      ["grpc://10.5.0.2:3445", { tls: false, joinToken: undefined }],
      ["10.5.0.2:3445", { scheme: "grpc", tls: false, joinToken: undefined }],
      ["https://api.sidero.dev?grpc_tunnel=true", { host: "api.sidero.dev", grpcTunnel: true }],
      [
        "https://siderolink.example.org:1234?jointoken=supersecret&foo=bar#some=fragment",
        { host: "siderolink.example.org", port: 1234, joinToken: "supersecret" },
      ],
      // Every scheme but grpc means TLS; only the port defaults.
      ["http://omni.example.com", { scheme: "http", tls: true, port: 443 }],
      ["HTTPS://Omni.Example.com", { scheme: "https", host: "Omni.Example.com", tls: true }],
      ["GRPC://omni.example.com", { scheme: "grpc", tls: false, port: 443 }],
      ["omni.example.com", { scheme: "grpc", tls: false, port: 443 }],
      ["grpc://omni.example.com/?grpc_tunnel=y", { grpcTunnel: true, path: "/" }],
      ["grpc://omni.example.com?grpc_tunnel=false", { grpcTunnel: false }],
      ["grpc://omni.example.com?grpc_tunnel=n", { grpcTunnel: false }],
      ["grpc://omni.example.com?grpc_tunnel=", { grpcTunnel: false }],
      ["https://omni.example.com?jointoken=", { joinToken: undefined }],
      ["https://omni.example.com?jointoken=a%2Bb+c%3D", { joinToken: "a+b c=" }],
      ["https://user:pass@omni.example.com:8443/join", { host: "omni.example.com", port: 8443 }],
      ["https://omni.example.com/join?jointoken=t", { path: "/join", joinToken: "t" }],
      [
        "grpc://[FDAE:41e4:649b:9303:0:0:0:1]:8090",
        {
          host: "fdae:41e4:649b:9303::1",
          port: 8090,
          authority: "[fdae:41e4:649b:9303::1]:8090",
          origin: "http://[fdae:41e4:649b:9303::1]:8090",
        },
      ],
      [
        "https://[fd00::1]",
        { host: "fd00::1", port: 443, authority: "[fd00::1]:443", origin: "https://[fd00::1]:443" },
      ],
      [
        "siderolink.example.com:50180",
        {
          authority: "siderolink.example.com:50180",
          origin: "http://siderolink.example.com:50180",
        },
      ],
    ];
    for (const [text, expected] of cases) {
      const parsed = parseApiUrl(text);
      for (const [key, value] of Object.entries(expected)) {
        assert.equal(parsed[key as keyof ApiUrl], value, `${text}: ${key}`);
      }
      assert.equal("joinToken" in parsed, parsed.joinToken !== undefined, text);
    }
  });

  it("refuses what Talos could not dial, saying what is accepted", () => {
    const cases: [string, RegExp][] = [
      ["", /^siderolink\.api: empty; expected a URL like https:\/\//],
      ["https://", /no host/],
      ["https://:443", /no host/],
      ["https://host:", /port "" is not a number from 1 to 65535/],
      ["https://host:0", /port "0" is not a number from 1 to 65535/],
      ["https://host:65536", /port "65536"/],
      ["https://host:44x", /port "44x"/],
      ["fd00::1:8090", /IPv6 address in a URL needs brackets/],
      ["https://[fd00::1", /no closing '\]'/],
      ["https://[fd00::1]x", /unexpected "x" after the IPv6 address/],
      ["https://[fd00::zz]:1", /"fd00::zz" is not an IPv6 address/],
      ["https://ho st", /host "ho st" is not a DNS name or IP address/],
      ["host?next=https://elsewhere", /':\/\/' must follow a scheme at the very start/],
      ["https://host?grpc_tunnel=1", /grpc_tunnel="1" is not recognised.*"true" or "y"/],
      ["https://host?grpc_tunnel=True", /grpc_tunnel="True" is not recognised/],
    ];
    for (const [text, message] of cases) {
      assert.throws(
        () => parseApiUrl(text),
        (error: unknown) => {
          assert.ok(error instanceof SideroLinkError);
          assert.equal(error.field, "siderolink.api");
          assert.equal(error.code, text === "" ? "missing" : "invalid");
          assert.match(error.message, message);
          return true;
        },
        text,
      );
    }
  });

  it("names the given field and never echoes the join token", () => {
    assert.throws(
      () => parseApiUrl("https://host:bad?jointoken=s3cr3t", "apiUrl"),
      (error: unknown) => {
        assert.ok(error instanceof SideroLinkError);
        assert.equal(error.field, "apiUrl");
        assert.match(error.message, /^apiUrl: port "bad"/);
        assert.ok(!error.message.includes("s3cr3t"));
        return true;
      },
    );
  });
});

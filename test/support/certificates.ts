/**
 * TLS material for tests, made with the openssl command: a private CA and a server certificate
 * it signed (P-256, valid two days) for the IP addresses the server answers on.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";

export interface TestCertificates {
  /** The CA certificate (PEM) that clients trust. */
  readonly ca: string;
  /** The server's certificate (PEM). */
  readonly cert: string;
  /** The server's private key (PEM). */
  readonly key: string;
}

const EcKey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];

/** Writes the CA and a certificate for `ipAddresses` into `dir`; fails naming openssl if absent. */
export function makeCertificates(dir: string, ipAddresses: readonly string[]): TestCertificates {
  const ca = join(dir, "ca.pem");
  const caKey = join(dir, "ca.key");
  const cert = join(dir, "server.pem");
  const key = join(dir, "server.key");
  const csr = join(dir, "server.csr");
  const ext = join(dir, "server.ext");
  writeFileSync(ext, `subjectAltName=${ipAddresses.map((ip) => `IP:${ip}`).join(",")}\n`);
  openssl(
    ["req", "-x509", ...EcKey, "-keyout", caKey, "-out", ca, "-days", "2"].concat([
      "-subj",
      "/CN=siderolink test CA",
    ]),
  );
  openssl(["req", ...EcKey, "-keyout", key, "-out", csr, "-subj", "/CN=server"]);
  openssl([
    "x509",
    "-req",
    "-in",
    csr,
    "-CA",
    ca,
    "-CAkey",
    caKey,
    "-CAcreateserial",
    "-out",
    cert,
    "-days",
    "2",
    "-extfile",
    ext,
  ]);
  return { ca, cert, key };
}

function openssl(args: string[]): void {
  try {
    execFileSync("openssl", args, { stdio: "pipe" });
  } catch (error) {
    assert.fail(
      `making a test certificate needs the openssl command (Debian package openssl): openssl ${args[0]} failed: ${String(error)}`,
    );
  }
}

import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { parseNetworkPrefix } from "../../shared/net/ip.ts";
import { ExitCode, SidecarError } from "../exit-codes.ts";
import { createProxyAgent, NO_PROXY, type ProxySettings, proxyFor } from "../net/proxy.ts";
import { type TlsSettings, tlsOptions } from "../tls.ts";

/**
 * The server address with its prefix length (`prefix::1/64`), from the relay's network
 * description (`GET /v1/networks/NAME`, with the uplink secret or the admin secret as bearer
 * token: the relay shows the description to either).
 */
export function fetchServerAddress(
  relayUrl: string,
  network: string,
  secret: string,
  tls: TlsSettings,
  proxies: ProxySettings = NO_PROXY,
): Promise<string> {
  const url = new URL(`/v1/networks/${encodeURIComponent(network)}`, relayUrl);
  const request = url.protocol === "https:" ? httpsRequest : httpRequest;
  const proxy = proxyFor(proxies, url);
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: "GET",
        headers: { authorization: `Bearer ${secret}`, accept: "application/json" },
        timeout: 10_000,
        ...(proxy ? { agent: createProxyAgent(proxy, url.protocol === "https:") } : {}),
        ...(url.protocol === "https:" ? tlsOptions(tls) : {}),
      },
      (response) => {
        let body = "";
        response.setEncoding("utf8");
        response.on("data", (chunk: string) => {
          body += chunk;
        });
        response.on("end", () => {
          const status = response.statusCode ?? 0;
          if (status === 401 || status === 403 || status === 404) {
            reject(
              new SidecarError(
                ExitCode.BadCredentials,
                `the relay refused access to network ${JSON.stringify(network)} (HTTP ${status}): check --network and --uplink-secret-file (siderolink-relay network show ${network} --json)`,
              ),
            );
            return;
          }
          if (status !== 200) {
            reject(new Error(`HTTP ${status} from ${url.origin}: ${body.slice(0, 200)}`));
            return;
          }
          try {
            const summary = JSON.parse(body) as { prefix?: string; serverAddress?: string };
            const bits = summary.prefix ? parseNetworkPrefix(summary.prefix, "prefix").bits : 64;
            if (!summary.serverAddress) throw new Error("no serverAddress");
            resolve(`${summary.serverAddress}/${bits}`);
          } catch (error) {
            reject(
              new SidecarError(
                ExitCode.Failure,
                `the relay's network description is unusable: ${(error as Error).message}`,
              ),
            );
          }
        });
      },
    );
    req.on("timeout", () => req.destroy(new Error(`no answer from ${url.origin} within 10 s`)));
    req.on("error", (error) => reject(new Error(`${url.origin} unreachable: ${error.message}`)));
    req.end();
  });
}

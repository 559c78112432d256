/**
 * The site gateway serving its LAN API over TLS (`--tls-cert/--tls-key`): Talos machines dial
 * `https://GATEWAY:PORT` trusting the site's CA, provision, tunnel over CreateStream and reach
 * the management server as over plaintext; a machine dialling plaintext, or not trusting the CA,
 * gets nothing. The relay is the Node one, the LAN side being the same for both runtimes.
 */
import { describeGateway } from "./support/gateway-suite.ts";

describeGateway("node", { lanTls: true });

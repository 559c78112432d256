/**
 * Exit statuses of `join` and `serve`, distinct per cause so that systemd units and scripts can
 * tell a problem to fix (the URL, the token, the installation) from one to wait out (the relay).
 * The units list every "fix it first" status in RestartPreventExitStatus.
 */
export const ExitCode = {
  Ok: 0,
  /** Anything not listed below; the message says what. */
  Failure: 1,
  /** Unknown option or missing argument. */
  Usage: 2,
  /** Without CAP_NET_ADMIN (root has it; a unit can grant it): TUN devices, addresses, routes. */
  NoNetAdmin: 3,
  /** /dev/net/tun is missing or not accessible (a container without the device). */
  NoTun: 4,
  /** The API URL, relay URL or SideroLinkConfig document is malformed. */
  BadUrl: 5,
  /**
   * The relay refused the join token (PermissionDenied), the uplink or admin secret, or the
   * server's key (not the one pinned for the network).
   */
  BadCredentials: 6,
  /** The relay stayed unreachable for the whole --connect-timeout. */
  RelayUnreachable: 7,
  /** The packet I/O addon (tun.node) is missing or does not load on this host. */
  NoAddon: 8,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** An error that ends the command with a chosen exit status and a message for the operator. */
export class SidecarError extends Error {
  override readonly name = "SidecarError";
  readonly exitCode: ExitCode;

  constructor(exitCode: ExitCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.exitCode = exitCode;
  }
}

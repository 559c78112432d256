/**
 * Exit statuses of `join` and `serve`, distinct per cause so that systemd units and scripts can
 * tell a problem to fix (the URL, the token) from one to wait out (the relay).
 */
export const ExitCode = {
  Ok: 0,
  /** Anything not listed below; the message says what. */
  Failure: 1,
  /** Unknown option or missing argument. */
  Usage: 2,
  /** Not running as root: TUN devices, addresses and routes need CAP_NET_ADMIN. */
  NotRoot: 3,
  /** /dev/net/tun is missing or not accessible (a container without the device). */
  NoTun: 4,
  /** The API URL, relay URL or SideroLinkConfig document is malformed. */
  BadUrl: 5,
  /** The relay refused the join token (PermissionDenied) or the admin secret. */
  BadCredentials: 6,
  /** The relay stayed unreachable for the whole --connect-timeout. */
  RelayUnreachable: 7,
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

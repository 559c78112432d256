/**
 * gRPC statuses as both tunnels that speak gRPC send them (CreateStream on HTTP/2, the HTTP-only
 * tunnel's gRPC-web trailers): the codes, the percent-encoding of grpc-message, and what a
 * stream's close code (frame.ts) means to a gRPC client.
 */
import { CloseCode } from "./frame.ts";

/** gRPC status codes the tunnels use. */
export const GrpcStatus = {
  Ok: 0,
  InvalidArgument: 3,
  DeadlineExceeded: 4,
  NotFound: 5,
  PermissionDenied: 7,
  ResourceExhausted: 8,
  Aborted: 10,
  Unavailable: 14,
  Unauthenticated: 16,
} as const;
export type GrpcStatus = (typeof GrpcStatus)[keyof typeof GrpcStatus];

/**
 * gRPC's percent-encoding of grpc-message: bytes outside printable ASCII, and '%', as %XX of
 * their UTF-8.
 */
export function encodeGrpcMessage(message: string): string {
  let out = "";
  for (const byte of new TextEncoder().encode(message)) {
    out +=
      byte >= 0x20 && byte <= 0x7e && byte !== 0x25
        ? String.fromCharCode(byte)
        : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

export function decodeGrpcMessage(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

/** The gRPC status a tunnel close code means to a gRPC-web client. */
export function grpcStatusOfClose(closeCode: number): GrpcStatus {
  switch (closeCode) {
    case CloseCode.Replaced:
      return GrpcStatus.Aborted;
    case CloseCode.PeerNotAllowed:
    case CloseCode.PeerRemoved:
      return GrpcStatus.PermissionDenied;
    case CloseCode.Unauthorized:
      return GrpcStatus.Unauthenticated;
    case CloseCode.Malformed:
    case CloseCode.TooBig:
    case CloseCode.UnsupportedVersion:
      return GrpcStatus.InvalidArgument;
    case CloseCode.LivenessTimeout:
      return GrpcStatus.DeadlineExceeded;
    case CloseCode.TryAgainLater:
      return GrpcStatus.ResourceExhausted;
    default:
      return GrpcStatus.Unavailable;
  }
}

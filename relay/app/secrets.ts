/** Secrets the relay hands out, and how they are compared. */

/**
 * 32 random bytes as unpadded base64url: safe in URLs, query strings and shell quotes. Drawn
 * again when it would start with '-' or '_', so no command line mistakes it for an option.
 */
export function randomSecret(bytes = 32): string {
  const raw = new Uint8Array(bytes);
  for (;;) {
    crypto.getRandomValues(raw);
    const text = btoa(String.fromCharCode(...raw))
      .replaceAll("+", "-")
      .replaceAll("/", "_")
      .replace(/=+$/, "");
    if (/^[A-Za-z0-9]/.test(text)) return text;
  }
}

/** A short id for listing and revoking a token without showing its secret: 8 hex digits. */
export function randomId(): string {
  const raw = new Uint8Array(4);
  crypto.getRandomValues(raw);
  return Array.from(raw, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/**
 * Compares two secrets in time that depends only on their lengths, so response timing does not
 * reveal how much of a guess was right.
 */
export function constantTimeEqual(a: string, b: string): boolean {
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b);
  let diff = x.length ^ y.length;
  const length = Math.max(x.length, y.length);
  for (let i = 0; i < length; i++)
    diff |= (x[i % (x.length || 1)] ?? 0) ^ (y[i % (y.length || 1)] ?? 0);
  return diff === 0;
}

/** The secret of `Authorization: Bearer <secret>`, or undefined. */
export function bearerToken(header: string | null | undefined): string | undefined {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header ?? "");
  return match?.[1];
}

/**
 * SHA-256 of a secret as lower-case hex: what the store keeps of a secret the relay only checks.
 * The secrets are 256 random bits, so a fast unsalted hash is enough: nothing can be guessed.
 */
export async function hashSecret(secret: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(secret));
  return Array.from(new Uint8Array(digest), (byte) => byte.toString(16).padStart(2, "0")).join("");
}

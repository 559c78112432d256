/**
 * What kind of problem a value had. The relay maps both to InvalidArgument on the wire; callers
 * that read configuration tell a user whether to add something or to fix it.
 */
export type SideroLinkErrorCode = "missing" | "invalid";

/**
 * A SideroLink value that could not be accepted. `field` names where the value came from
 * (`node_public_key`, `siderolink.api`, `apiUrl`), and the message starts with it, so the text
 * alone tells a person what to fix.
 */
export class SideroLinkError extends Error {
  override readonly name = "SideroLinkError";
  readonly code: SideroLinkErrorCode;
  readonly field: string;

  constructor(code: SideroLinkErrorCode, field: string, detail: string, options?: ErrorOptions) {
    super(`${field}: ${detail}`, options);
    this.code = code;
    this.field = field;
  }
}

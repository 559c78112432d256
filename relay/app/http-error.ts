/**
 * The errors the relay's HTTP routes answer with their own message. Anything else that escapes
 * a route is the relay's fault: app.ts logs it and answers 500 with a generic body, so internal
 * details never reach a client.
 */

export type HttpErrorStatus = 400 | 401 | 403 | 404 | 409;

/** A refusal with a status and a message that tells the caller what to do. */
export class HttpError extends Error {
  override readonly name: string = "HttpError";
  readonly status: HttpErrorStatus;
  constructor(status: HttpErrorStatus, message: string, options?: ErrorOptions) {
    super(message, options);
    this.status = status;
  }
}

/** The request carried a value the relay cannot accept: 400 with what was wrong. */
export class InvalidInputError extends HttpError {
  override readonly name = "InvalidInputError";
  constructor(message: string, options?: ErrorOptions) {
    super(400, message, options);
  }
}

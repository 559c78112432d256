/**
 * One line per event on standard error: `2026-01-02T03:04:05.678Z wg0: handshake completed`.
 * Lines say what happened; `debug` lines appear only with LOG_LEVEL=debug (wireguard-go's
 * variable, so one setting serves both).
 */
export interface Logger {
  info(message: string): void;
  error(message: string): void;
  debug(message: string): void;
}

export function createLogger(scope: string): Logger {
  const debug = process.env.LOG_LEVEL === "debug" || process.env.LOG_LEVEL === "verbose";
  const write = (message: string): void => {
    process.stderr.write(`${new Date().toISOString()} ${scope}: ${message}\n`);
  };
  return { info: write, error: write, debug: debug ? write : () => {} };
}

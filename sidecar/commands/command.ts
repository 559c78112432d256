/** A subcommand: `siderolink-sidecar NAME ARGS...`. */
export interface Command {
  /** One line for the command list. */
  readonly summary: string;
  /** The full `--help` text of the subcommand. */
  readonly help: string;
  /** Runs with the arguments after the name; resolves with the exit status. */
  run(args: string[]): Promise<number>;
}

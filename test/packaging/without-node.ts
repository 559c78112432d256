/**
 * Runs a command the way it runs on a host without Node: in a private mount namespace where
 * every `node` on the standard PATH is covered by /dev/null, with only that PATH. The wrapper
 * refuses to run the command (status 97) if `node` is still found, so that a host where Node
 * lives elsewhere fails the test instead of passing it quietly.
 */
export const NO_NODE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const HIDE_NODE = `
for dir in $(echo "$PATH" | tr : ' '); do
  if [ -e "$dir/node" ]; then mount --bind /dev/null "$dir/node" || exit 96; fi
done
if command -v node >/dev/null 2>&1 && node --version >/dev/null 2>&1; then
  echo "without-node: node is still runnable at $(command -v node)" >&2
  exit 97
fi
exec "$@"
`;

/** The command and arguments that run `command args` with Node hidden. */
export function withoutNode(command: string, args: readonly string[]): [string, string[]] {
  return [
    "env",
    [
      `PATH=${NO_NODE_PATH}`,
      "unshare",
      "--mount",
      "--propagation",
      "private",
      "sh",
      "-c",
      HIDE_NODE,
      "without-node",
      command,
      ...args,
    ],
  ];
}

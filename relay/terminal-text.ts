/**
 * Text from the network (a node's UUID is whatever the node sent) on its way to an operator's
 * terminal: control characters would be obeyed (clear the screen, retitle the window, rewrite
 * earlier lines), so they are shown as `\xNN` instead.
 */

/** C0 controls, DEL and C1 controls (0x9b is a one-byte CSI on some terminals). */
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is its job.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;

/** `text` with every control character written as `\xNN`. */
export function printable(text: string): string {
  return text.replace(CONTROL, (char) => `\\x${char.charCodeAt(0).toString(16).padStart(2, "0")}`);
}

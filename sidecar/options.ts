/**
 * Command-line options of the long-running commands: `--name value`, `--name=value` and
 * `--flag`, each optionally backed by an environment variable (the flag wins).
 */
import { ExitCode, SidecarError } from "./exit-codes.ts";
import { redactUrl } from "./log.ts";

export interface OptionSpec {
  readonly name: string;
  /** Takes a value (else a boolean flag). */
  readonly value: boolean;
  readonly env?: string;
}

export interface ParsedOptions {
  readonly positional: readonly string[];
  get(name: string): string | undefined;
  flag(name: string): boolean;
}

export function parseOptions(
  args: readonly string[],
  specs: readonly OptionSpec[],
  env: NodeJS.ProcessEnv = process.env,
): ParsedOptions {
  const byName = new Map(specs.map((spec) => [spec.name, spec]));
  const values = new Map<string, string>();
  const flags = new Set<string>();
  const positional: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (!arg.startsWith("--")) {
      positional.push(arg);
      continue;
    }
    const eq = arg.indexOf("=");
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    const spec = byName.get(name);
    if (!spec) throw new SidecarError(ExitCode.Usage, `unknown option --${name}; see --help`);
    if (!spec.value) {
      if (eq >= 0) throw new SidecarError(ExitCode.Usage, `--${name} takes no value; see --help`);
      flags.add(name);
      continue;
    }
    let value: string | undefined = eq < 0 ? args[++i] : arg.slice(eq + 1);
    if (value === undefined)
      throw new SidecarError(ExitCode.Usage, `--${name} needs a value; see --help`);
    values.set(name, value);
    value = undefined;
  }
  return {
    positional,
    get(name) {
      const spec = byName.get(name);
      return values.get(name) ?? (spec?.env ? env[spec.env] || undefined : undefined);
    },
    flag(name) {
      if (flags.has(name)) return true;
      const spec = byName.get(name);
      const text = spec?.env ? env[spec.env] : undefined;
      return text === "1" || text === "true";
    },
  };
}

/** A whole number option within bounds. */
export function integerOption(
  options: ParsedOptions,
  name: string,
  fallback: number,
  min: number,
  max: number,
): number {
  const text = options.get(name);
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!/^\d+$/.test(text) || value < min || value > max) {
    throw new SidecarError(
      ExitCode.Usage,
      `--${name} ${JSON.stringify(text)}: expected a whole number ${min}-${max}`,
    );
  }
  return value;
}

/** One of a fixed set of words. */
export function choiceOption<T extends string>(
  options: ParsedOptions,
  name: string,
  choices: readonly T[],
  fallback: T,
): T {
  const text = options.get(name) ?? fallback;
  if (!(choices as readonly string[]).includes(text)) {
    throw new SidecarError(
      ExitCode.Usage,
      `--${name} ${JSON.stringify(text)}: expected one of ${choices.join(", ")}`,
    );
  }
  return text as T;
}

/** The interface name rule of Linux (and wireguard-go). */
export function checkInterfaceName(name: string): string {
  if (!/^[A-Za-z0-9_.=+-]{1,15}$/.test(name)) {
    throw new SidecarError(
      ExitCode.Usage,
      `invalid interface name ${JSON.stringify(name)}: use 1-15 letters, digits or _.=+-`,
    );
  }
  return name;
}

/** An option that must be given. */
export function requiredOption(options: ParsedOptions, name: string): string {
  const value = options.get(name);
  if (value === undefined || value === "") {
    throw new SidecarError(ExitCode.Usage, `--${name} is required; see --help`);
  }
  return value;
}

/** `--relay`: the relay's base URL, http: or https:. */
export function relayUrlOption(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new SidecarError(
      ExitCode.BadUrl,
      `--relay ${JSON.stringify(redactUrl(text))} is not a URL; expected http(s)://host:port`,
    );
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new SidecarError(
      ExitCode.BadUrl,
      `--relay scheme ${url.protocol} is not http: or https:`,
    );
  }
  return url;
}

/** `HOST:PORT` or `[IPV6]:PORT` to listen on. */
export function listenOption(
  options: ParsedOptions,
  name: string,
): { host: string; port: number } | undefined {
  const text = options.get(name);
  if (text === undefined) return undefined;
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text);
  const port = Number(match?.[3]);
  if (!match || port > 65535) {
    throw new SidecarError(
      ExitCode.Usage,
      `--${name} ${JSON.stringify(text)}: expected ADDRESS:PORT, e.g. 0.0.0.0:50000 or [::]:50000`,
    );
  }
  return { host: match[1] ?? match[2], port };
}

/** Command-line parsing for the commands: node:util parseArgs, its errors as one-line usage errors. */
import { parseArgs } from "node:util";

/** A mistake in the command line: the command prints one line and a pointer to --help, and exits 2. */
export class UsageError extends Error {}

export const EXIT_USAGE = 2;

type OptionSpec = {
  readonly type: "string" | "boolean";
  readonly short?: string;
  readonly multiple?: boolean;
};

/**
 * Parses `args` against `options` (long names without "--"); -h/--help
 * anywhere gives "help". Unknown options, missing values and stray
 * arguments throw UsageError with a short message.
 */
export function parseCommandLine<K extends string>(
  args: readonly string[],
  options: Readonly<Record<K, OptionSpec>>,
): { [P in K]?: string | boolean | string[] } | "help" {
  if (args.includes("--help") || args.includes("-h")) return "help";
  try {
    const { values } = parseArgs({
      args: [...args],
      options: options as Record<string, OptionSpec>,
      strict: true,
      allowPositionals: false,
    });
    for (const [name, value] of Object.entries(values))
      if (value === "" || (Array.isArray(value) && value.includes("")))
        throw new UsageError(`--${name} needs a value`);
    return values as { [P in K]?: string | boolean | string[] };
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new UsageError(usageMessage(err));
  }
}

/** parseArgs's error (several sentences) as one short line. */
function usageMessage(err: unknown): string {
  const e = err as { code?: string; message?: string };
  const message = e.message ?? String(err);
  const quoted = /'([^']+)'/.exec(message)?.[1] ?? "";
  const flag = quoted.replace(/ <value>$/, "");
  switch (e.code) {
    case "ERR_PARSE_ARGS_UNKNOWN_OPTION":
      return `unknown option "${flag}"`;
    case "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL":
      return `unexpected argument "${flag}"`;
    case "ERR_PARSE_ARGS_INVALID_OPTION_VALUE":
      if (/does not take an argument/.test(message)) return `${flag} takes no value`;
      // "--jacks -1": parseArgs will not take a value that looks like an option.
      if (/ambiguous/.test(message))
        return `${flag} needs a value (one starting with "-" goes as ${flag}=VALUE)`;
      return `${flag} needs a value`;
    default:
      return message.split("\n")[0]!;
  }
}

/** The one line a usage error prints (after the command's prefix). */
export function usageLine(err: UsageError, command: string): string {
  return `${err.message} (see ${command} --help)`;
}

/**
 * The config file: JSON with comments, validated into the typed, deeply frozen {@linkcode Config}
 * of `config/types.ts`. Every problem in a file is reported at once, one line each, as
 * `PATH: MESSAGE` (e.g. `pvds[1].servers[0]: "300.1.1.1" is not an IP address`).
 *
 * @example Loading a file
 * ```ts
 * import { ConfigError, loadConfigFile } from "./parse.ts";
 * try {
 *   const config = await loadConfigFile("/etc/pvdns/pvdns.jsonc");
 *   console.log(config.pvds.map((p) => p.id));
 * } catch (error) {
 *   if (error instanceof ConfigError) console.error(error.errors.join("\n"));
 *   else throw error;
 * }
 * ```
 *
 * @module
 */
import * as jsonc from "jsonc-parser";
import type { z } from "zod";
import type { Config, PvdOrigin } from "./types.ts";
import { ConfigError } from "./error.ts";
import {
  formatPath,
  MAX_CONFIG_BYTES,
  MAX_CONFIG_DEPTH,
  nestingError,
  readConfigBytes,
} from "./text.ts";
import { crossCheck } from "./cross_check.ts";
import {
  applySchema,
  DEFAULT_LISTEN,
  errorMessage,
  type ListenAddress,
  parseListenAddress,
  parseServer,
  show,
} from "./schema.ts";

export { DEFAULT_LISTEN, parseListenAddress, parseServer };
export type { ListenAddress };

export { ConfigError, MAX_CONFIG_BYTES, MAX_CONFIG_DEPTH };

/** Options of {@linkcode parseConfig} and {@linkcode validateConfig}. */
export interface ParseConfigOptions {
  /** The `origin` given to every PvD of the file. @default "config" */
  readonly origin?: PvdOrigin;
}

/**
 * Parses and validates a config file's text (JSON with comments and trailing commas).
 *
 * @param text The file's contents.
 * @param options See {@linkcode ParseConfigOptions}.
 * @returns The normalised, deeply frozen config.
 * @throws {ConfigError} Listing every syntax or validation error.
 *
 * @example A minimal config
 * ```ts
 * const config = parseConfig(`{
 *   // one PvD, reached through eth0
 *   "pvds": [{ "id": "home.example.net", "sourceAddresses": ["192.0.2.10"],
 *              "servers": ["192.0.2.1"], }],
 * }`);
 * config.listen[0].text; // "127.0.0.53:53"
 * ```
 */
export function parseConfig(text: string, options: ParseConfigOptions = {}): Config {
  // Bounded before anything recurses over the text: a parser, the schema and deepFreeze all
  // walk the value depth-first (5,000 levels of [ overflowed the stack).
  if (text.length > MAX_CONFIG_BYTES) {
    throw new ConfigError([
      `config: file too large (${text.length} characters; at most ${MAX_CONFIG_BYTES})`,
    ]);
  }
  const tooDeep = nestingError(text);
  if (tooDeep) throw new ConfigError([tooDeep]);
  const errors: jsonc.ParseError[] = [];
  const raw: unknown = jsonc.parse(text, errors, { allowTrailingComma: true });
  if (errors.length > 0) {
    const lines = errors.slice(0, MAX_SYNTAX_ERRORS)
      .map((e) => `${lineColumn(text, e.offset)}: ${describeSyntaxError(e.error)}`);
    if (errors.length > MAX_SYNTAX_ERRORS) {
      lines.push(`… and ${errors.length - MAX_SYNTAX_ERRORS} more syntax errors`);
    }
    throw new ConfigError(lines);
  }
  const duplicates = duplicateKeys(text);
  if (duplicates.length > 0) throw new ConfigError(duplicates);
  return validateConfig(raw, options);
}

/**
 * Validates an already parsed config value: the same checks as {@linkcode parseConfig}, for
 * configs built in code (e.g. the embedded default of `host/default_config.ts`).
 *
 * @param raw A plain JSON-like value.
 * @param options See {@linkcode ParseConfigOptions}.
 * @returns The normalised, deeply frozen config.
 * @throws {ConfigError} Listing every validation error.
 *
 * @example
 * ```ts
 * validateConfig({ discovery: { host: true } }).pvds; // []
 * ```
 */
export function validateConfig(raw: unknown, options: ParseConfigOptions = {}): Config {
  const result = applySchema(raw, issueMessage);
  const errors = "issues" in result ? result.issues.flatMap((i) => formatIssue(i, [])) : [];
  errors.push(...crossCheck(raw));
  if ("issues" in result || errors.length > 0) throw new ConfigError([...new Set(errors)]);
  const data = result.data;
  const config: Config = {
    ...data,
    pvds: data.pvds.map((p) => ({ ...p, origin: options.origin ?? "config" })),
    rules: data.rules.map((r, index) => ({ index, ...r })),
  };
  return deepFreeze(config);
}

/**
 * Reads and parses a config file.
 *
 * @param path File to read.
 * @param options See {@linkcode ParseConfigOptions}.
 * @returns The normalised, deeply frozen config.
 * @throws {ConfigError} When the file cannot be read (naming the path) or is not valid.
 *
 * @example
 * ```ts
 * const config = await loadConfigFile("/etc/pvdns/pvdns.jsonc");
 * ```
 */
export async function loadConfigFile(
  path: string,
  options: ParseConfigOptions = {},
): Promise<Config> {
  let bytes: Uint8Array;
  try {
    bytes = await readConfigBytes(path, MAX_CONFIG_BYTES);
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    throw new ConfigError([`${path}: cannot read the config file: ${errorMessage(error)}`]);
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new ConfigError([`${path}: not a text file (the bytes are not UTF-8)`]);
  }
  return parseConfig(text, options);
}

// ---------------------------------------------------------------------------------------------
// Syntax errors

/** Syntax errors listed; binary garbage would give one per byte. */
const MAX_SYNTAX_ERRORS = 20;

function lineColumn(text: string, offset: number): string {
  const before = text.slice(0, offset);
  const line = before.split("\n").length;
  return `${line}:${offset - before.lastIndexOf("\n")}`;
}

function describeSyntaxError(code: jsonc.ParseErrorCode): string {
  // "CloseBraceExpected" -> "close brace expected"
  return jsonc.printParseErrorCode(code).replace(/(?<=[a-z])(?=[A-Z])/g, " ").toLowerCase();
}

/** jsonc-parser keeps the last of two equal keys silently; a config file must not. */
function duplicateKeys(text: string): string[] {
  const errors: string[] = [];
  const seen: Set<string>[] = [];
  jsonc.visit(text, {
    onObjectBegin: () => void seen.push(new Set()),
    onObjectEnd: () => void seen.pop(),
    onObjectProperty: (key, offset, _length, _line, _column, pathSupplier) => {
      const keys = seen[seen.length - 1]!;
      if (keys.has(key)) {
        errors.push(
          `${formatPath([...pathSupplier(), key])}: duplicate key (${lineColumn(text, offset)})`,
        );
      }
      keys.add(key);
    },
  });
  return errors;
}

// ---------------------------------------------------------------------------------------------
// zod issues -> `PATH: MESSAGE`

const EXPECTED: Record<string, string> = {
  string: "a string",
  number: "a number",
  int: "an integer",
  boolean: "true or false",
  array: "a list",
  object: "an object",
};

/** Per-parse zod error map: messages that name the value. Schema-level messages win over it. */
function issueMessage(issue: z.core.$ZodRawIssue): string | undefined {
  const input = issue.input;
  switch (issue.code) {
    case "invalid_type":
      return input === undefined
        ? "required key is missing"
        : `expected ${EXPECTED[issue.expected] ?? issue.expected}, got ${show(input)}`;
    case "too_small":
    case "too_big": {
      const [bound, limit] = issue.code === "too_small"
        ? ["at least", issue.minimum]
        : ["at most", issue.maximum];
      if (issue.origin === "array") return `needs ${bound} ${limit} items`;
      return `must be ${bound} ${limit}: current value is ${show(input)}`;
    }
    case "invalid_value":
      return `${show(input)} is not one of ${issue.values.map((v) => show(v)).join(", ")}`;
    case "unrecognized_keys":
      return "unknown key";
    case "invalid_union": {
      const expected = issue.errors.flatMap((branch) =>
        branch.filter((i) => i.code === "invalid_type" && i.path.length === 0)
          .map((i) => EXPECTED[(i as z.core.$ZodIssueInvalidType).expected] ?? "")
      );
      return `expected ${expected.join(" or ")}, got ${show(input)}`;
    }
    default:
      return undefined;
  }
}

/** One issue -> lines. Unknown keys get a line each; a union reports the branch of the value's type. */
function formatIssue(issue: z.core.$ZodIssue, prefix: readonly PropertyKey[]): string[] {
  const path = [...prefix, ...issue.path];
  if (issue.code === "unrecognized_keys") {
    return issue.keys.map((key) => `${formatPath([...path, key])}: unknown key`);
  }
  if (issue.code === "invalid_union") {
    const typed = issue.errors.filter((branch) =>
      !branch.some((i) => i.code === "invalid_type" && i.path.length === 0)
    );
    if (typed.length === 1) return typed[0]!.flatMap((i) => formatIssue(i, path));
  }
  return [`${formatPath(path)}: ${issue.message}`];
}

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const item of Object.values(value)) deepFreeze(item);
  }
  return value;
}

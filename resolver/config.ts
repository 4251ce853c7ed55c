/**
 * The config file: JSON with comments, validated into the typed, deeply frozen {@linkcode Config}
 * of `config_types.ts`. Every problem in a file is reported at once, one line each, as
 * `PATH: MESSAGE` (e.g. `pvds[1].servers[0]: "300.1.1.1" is not an IP address`).
 *
 * @example Loading a file
 * ```ts
 * import { ConfigError, loadConfigFile } from "./config.ts";
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
import type { Config, PvdOrigin } from "./config_types.ts";
import {
  applySchema,
  DEFAULT_LISTEN,
  errorMessage,
  isLoopback,
  type ListenAddress,
  parseIp,
  parseListenAddress,
  parsePvdId,
  parseServer,
  show,
} from "./config_schema.ts";

export { DEFAULT_LISTEN, parseListenAddress, parseServer };
export type { ListenAddress };

/** A config that cannot be used. `errors` holds one `PATH: MESSAGE` line per problem. */
export class ConfigError extends Error {
  /** Every problem found: first those of single values, then those relating parts of the file. */
  readonly errors: readonly string[];

  /**
   * Makes the error from its lines.
   *
   * @param errors One line per problem; the message is all of them joined by newlines.
   */
  constructor(errors: readonly string[]) {
    super(errors.join("\n"));
    this.name = "ConfigError";
    this.errors = Object.freeze([...errors]);
  }
}

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
 * configs built in code (e.g. the embedded default of `host_default.ts`).
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
    bytes = await readBounded(path, MAX_CONFIG_BYTES);
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

/** Largest config file read, bytes (a host's config is a few KB). */
export const MAX_CONFIG_BYTES = 1024 * 1024;
/** Deepest nesting of objects and lists in a config file (the schema needs 5). */
export const MAX_CONFIG_DEPTH = 32;
/** Syntax errors listed; binary garbage would give one per byte. */
const MAX_SYNTAX_ERRORS = 20;

/** The file's bytes, refused without reading them all when it is larger than `max`. */
async function readBounded(path: string, max: number): Promise<Uint8Array> {
  using file = await Deno.open(path, { read: true });
  const info = await file.stat();
  if (!info.isFile) throw new ConfigError([`${path}: not a regular file`]);
  if (info.size > max) {
    throw new ConfigError([`${path}: file too large (${info.size} bytes; at most ${max})`]);
  }
  // Read at most max + 1 bytes: the file may grow between stat and read.
  const buffer = new Uint8Array(max + 1);
  let used = 0;
  while (used < buffer.length) {
    const n = await file.read(buffer.subarray(used));
    if (n === null) break;
    used += n;
  }
  if (used > max) throw new ConfigError([`${path}: file too large (more than ${max} bytes)`]);
  return buffer.subarray(0, used);
}

/**
 * `PATH: too deeply nested (…)` when objects and lists nest deeper than
 * {@linkcode MAX_CONFIG_DEPTH}, found by one loop over the text (no recursion, so any depth is
 * safe to check). Strings and comments are skipped; the path is that of the first container too
 * deep, as far as it can be told before parsing.
 */
function nestingError(text: string): string | undefined {
  const kinds: string[] = []; // "{" or "[" per open container
  const path: PropertyKey[] = []; // the key or index of each open container but the outermost
  const index: number[] = []; // the next index inside each open list
  let lastString = "";
  let key: string | undefined; // the current key inside the innermost object
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      lastString = text.slice(i + 1, j);
      i = j;
    } else if (c === "/" && text[i + 1] === "/") {
      const end = text.indexOf("\n", i);
      i = end < 0 ? text.length : end;
    } else if (c === "/" && text[i + 1] === "*") {
      const end = text.indexOf("*/", i + 2);
      i = end < 0 ? text.length : end + 1;
    } else if (c === ":" && kinds[kinds.length - 1] === "{") {
      key = lastString;
    } else if (c === "," && kinds[kinds.length - 1] === "[") {
      index[index.length - 1]!++;
    } else if (c === "{" || c === "[") {
      const top = kinds[kinds.length - 1];
      if (top === "[") path.push(index[index.length - 1]!);
      else if (top === "{") path.push(key ?? "");
      kinds.push(c);
      index.push(0);
      if (kinds.length > MAX_CONFIG_DEPTH) {
        return `${formatPath(path)}: too deeply nested (more than ${MAX_CONFIG_DEPTH} levels)`;
      }
    } else if (c === "}" || c === "]") {
      if (kinds.length > 1) path.pop();
      kinds.pop();
      index.pop();
    }
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Syntax errors

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

/** `["pvds", 1, "servers", 0]` -> `pvds[1].servers[0]`. */
function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const key of path) {
    if (typeof key === "number") out += `[${key}]`;
    else if (/^[A-Za-z_$][\w$]*$/.test(String(key))) out += `${out ? "." : ""}${String(key)}`;
    else out += `[${JSON.stringify(String(key))}]`;
  }
  return out || "config";
}

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

// ---------------------------------------------------------------------------------------------
// Cross-checks. They read the raw value defensively so that they run, and report, even when
// zod found problems elsewhere in the file; a part zod rejects is skipped here.

type Raw = Record<string, unknown>;
const isObject = (v: unknown): v is Raw => typeof v === "object" && v !== null && !Array.isArray(v);
const list = (v: unknown): unknown[] => Array.isArray(v) ? v : [];
const listOrOne = (v: unknown): unknown[] => Array.isArray(v) ? v : v === undefined ? [] : [v];

function attempt<T>(parse: (text: string) => T, value: unknown): T | undefined {
  if (typeof value !== "string") return undefined;
  try {
    return parse(value);
  } catch {
    return undefined;
  }
}

const FAMILY_NAME = { 4: "IPv4", 6: "IPv6" } as const;

function crossCheck(raw: unknown): string[] {
  if (!isObject(raw)) return [];
  const errors: string[] = [];
  const fail = (path: string, message: string) => void errors.push(`${path}: ${message}`);

  // PvD ids are unique; each PvD can reach its servers.
  const ids = new Set<string>();
  list(raw.pvds).forEach((pvd, i) => {
    if (!isObject(pvd)) return;
    const id = attempt(parsePvdId, pvd.id);
    if (id !== undefined && ids.has(id)) {
      fail(`pvds[${i}].id`, `${show(pvd.id)} is a duplicate PvD id`);
    }
    if (id !== undefined) ids.add(id);
    checkServers(pvd, `pvds[${i}]`, fail);
    const encrypted = list(pvd.servers).some((s) => {
      const server = attempt(parseServer, s);
      return server?.protocol === "tls" || server?.protocol === "https";
    });
    if (pvd.encryption === "strict" && !encrypted && list(pvd.servers).length > 0) {
      fail(`pvds[${i}].encryption`, `"strict" needs at least one tls:// or https:// server`);
    }
  });
  const knownPvd = (path: string, value: unknown): string | undefined => {
    const id = attempt(parsePvdId, value);
    if (id === undefined || ids.has(id)) return id;
    fail(path, `${show(value)} is not a known PvD id`);
  };

  const discovery = isObject(raw.discovery) ? raw.discovery : {};
  const discoveryOn = discovery.host === true || list(discovery.ra).length > 0;
  if ((raw.pvds === undefined || list(raw.pvds).length === 0) && !discoveryOn) {
    if (raw.pvds === undefined || Array.isArray(raw.pvds)) {
      fail("pvds", "at least one PvD is required unless discovery is on");
    }
  }

  // Listen addresses are unique; a listener's PvD exists.
  const listeners = new Map<string, string>();
  const used = (path: string, value: unknown) => {
    const address = attempt(parseListenAddress, value);
    if (address === undefined) return;
    const other = listeners.get(address.text);
    if (other === undefined) listeners.set(address.text, path);
    else if (path.startsWith("listen")) {
      fail(path, `${show(value)} is a duplicate listen address (see ${other})`);
    } else fail(path, `${show(value)} is already used by ${other}`);
  };
  (raw.listen === undefined ? [DEFAULT_LISTEN] : list(raw.listen)).forEach((entry, i) => {
    used(
      isObject(entry) ? `listen[${i}].address` : `listen[${i}]`,
      isObject(entry) ? entry.address : entry,
    );
    if (isObject(entry) && entry.pvd !== undefined) knownPvd(`listen[${i}].pvd`, entry.pvd);
  });
  const dnsListeners = new Set(listeners.keys());
  // No open resolver by accident: a listener other hosts can reach needs an allow list.
  if (raw.allow === undefined) {
    (raw.listen === undefined ? [] : list(raw.listen)).forEach((entry, i) => {
      const value = isObject(entry) ? entry.address : entry;
      const address = attempt(parseListenAddress, value);
      if (address && !isLoopback(address.address)) {
        fail(
          "allow",
          `required because listen[${i}] ${show(value)} is not a loopback address: ` +
            `list the client prefixes that may query (e.g. ["192.0.2.0/24"])`,
        );
      }
    });
  }

  // Control and metrics: their own ports, and a token when the control API is on TCP.
  const control = isObject(raw.control) ? raw.control : undefined;
  const controlTcp = typeof control?.listen === "string" && !control.listen.startsWith("unix:");
  if (controlTcp) {
    used("control.listen", control!.listen);
    const address = attempt(parseListenAddress, control!.listen);
    if (address && !isLoopback(address.address)) {
      fail(
        "control.listen",
        `${show(control!.listen)} is not a loopback address: ` +
          "the control API is never reachable from another host (use unix:PATH or 127.0.0.1:PORT)",
      );
    }
    if (control!.token === undefined) {
      fail(
        "control.token",
        "required when the control API listens on TCP (use unix:PATH otherwise)",
      );
    }
  }
  const metrics = isObject(raw.metrics) ? raw.metrics : undefined;
  if (metrics) used("metrics.listen", metrics.listen);

  // Rules: one action, known PvDs, configured listeners.
  list(raw.rules).forEach((rule, i) => {
    if (!isObject(rule)) return;
    const path = `rules[${i}]`;
    const hasPvd = rule.pvd !== undefined;
    if (hasPvd && rule.action !== undefined) fail(path, `has both "pvd" and "action"; give one`);
    if (!hasPvd && rule.action === undefined) {
      fail(path, `needs "pvd" (route to a PvD) or "action"`);
    }
    if (rule.action === "answer" && rule.answer === undefined) {
      fail(`${path}.answer`, `required when action is "answer"`);
    }
    if (rule.answer !== undefined && rule.action !== "answer") {
      fail(`${path}.answer`, `only allowed when action is "answer"`);
    }
    if (isObject(rule.match) && Object.keys(rule.match).length === 0) {
      fail(`${path}.match`, "needs at least one of suffix, client, listener, qtype");
    }
    const target = hasPvd ? knownPvd(`${path}.pvd`, rule.pvd) : undefined;
    if (!hasPvd && list(rule.fallback).length > 0) {
      fail(`${path}.fallback`, `only allowed with "pvd"`);
    }
    const fallbacks = new Set<string>();
    list(rule.fallback).forEach((value, j) => {
      const id = knownPvd(`${path}.fallback[${j}]`, value);
      if (id !== undefined && id === target) {
        fail(`${path}.fallback[${j}]`, `${show(value)} is the rule's own PvD`);
      } else if (id !== undefined && fallbacks.has(id)) {
        fail(`${path}.fallback[${j}]`, `${show(value)} is listed twice`);
      }
      if (id !== undefined) fallbacks.add(id);
    });
    const listener = isObject(rule.match) ? rule.match.listener : undefined;
    listOrOne(listener).forEach((value, j) => {
      const address = attempt(parseListenAddress, value);
      if (address !== undefined && !dnsListeners.has(address.text)) {
        const at = Array.isArray(listener)
          ? `${path}.match.listener[${j}]`
          : `${path}.match.listener`;
        fail(at, `${show(value)} is not a configured listen address`);
      }
    });
  });

  // Numbers that bound each other (defaults as in config_schema.ts).
  const number = (v: unknown, fallback: number) => typeof v === "number" ? v : fallback;
  const cache = isObject(raw.cache) ? raw.cache : {};
  const [minTtl, maxTtl] = [number(cache.minTtl, 0), number(cache.maxTtl, 86400)];
  if (minTtl > maxTtl) fail("cache.minTtl", `${minTtl} is greater than cache.maxTtl (${maxTtl})`);
  const upstream = isObject(raw.upstream) ? raw.upstream : {};
  const [timeout, deadline] = [number(upstream.timeoutMs, 2000), number(upstream.deadlineMs, 4500)];
  if (deadline < timeout) {
    const what = upstream.deadlineMs === undefined ? " (the default)" : "";
    fail("upstream.deadlineMs", `${deadline}${what} is less than upstream.timeoutMs (${timeout})`);
  }
  return errors;
}

/** Each server with an IP address needs a source address of its family; a DoH host needs Do53. */
function checkServers(pvd: Raw, path: string, fail: (path: string, message: string) => void) {
  const sources = list(pvd.sourceAddresses).map((s) => attempt(parseIp, s));
  const servers = list(pvd.servers).map((s) => attempt(parseServer, s));
  const families = new Set(sources.map((s) => s?.family));
  // An unreadable source address would make this guess wrong; zod reports it already.
  const sourcesKnown = sources.length > 0 && !families.has(undefined);
  const do53 = servers.some((s) => s?.address && (s.protocol === "udp" || s.protocol === "tcp"));
  servers.forEach((server, j) => {
    if (server?.address !== undefined && sourcesKnown && !families.has(server.family)) {
      const family = FAMILY_NAME[server.family!];
      fail(
        `${path}.servers[${j}]`,
        `${
          show(server.text)
        } is ${family} but there is no ${family} source address in sourceAddresses`,
      );
    }
    if (server?.host !== undefined && !do53) {
      fail(
        `${path}.servers[${j}]`,
        `${show(server.text)} names a host, which is looked up only through this PvD's own ` +
          "Do53 servers, and the PvD has none",
      );
    }
  });
}

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const item of Object.values(value)) deepFreeze(item);
  }
  return value;
}

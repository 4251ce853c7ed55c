/**
 * The config file before it is parsed: its bytes read with a size bound, its nesting checked in
 * one loop (no recursion: the parser, the schema and deepFreeze all walk the value depth-first,
 * and 5,000 levels of `[` overflowed the stack), and the `PATH` of `PATH: MESSAGE` lines.
 *
 * @module
 */
import { ConfigError } from "./error.ts";

/** `["pvds", 1, "servers", 0]` -> `pvds[1].servers[0]`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const key of path) {
    if (typeof key === "number") out += `[${key}]`;
    else if (/^[A-Za-z_$][\w$]*$/.test(String(key))) out += `${out ? "." : ""}${String(key)}`;
    else out += `[${JSON.stringify(String(key))}]`;
  }
  return out || "config";
}

/** Largest config file read, bytes (a host's config is a few KB). */
export const MAX_CONFIG_BYTES = 1024 * 1024;
/** Deepest nesting of objects and lists in a config file (the schema needs 5). */
export const MAX_CONFIG_DEPTH = 32;

/** The file's bytes, refused without reading them all when it is larger than `max`. */
export async function readConfigBytes(path: string, max: number): Promise<Uint8Array> {
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
export function nestingError(text: string): string | undefined {
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

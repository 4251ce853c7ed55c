/**
 * Query a server with BIND's `dig` and parse what it printed.
 *
 * Always `+tries=1 +time=N` (default 2 s) so one call sends one query and is bounded; the
 * process is also killed after `timeoutMs`. Without `tcp`, a truncated answer is retried over
 * TCP by dig itself unless `extra` holds `+ignore` (use that to see the TC bit).
 *
 * @module
 */

import { exec } from "./exec.ts";

/** One resource record as dig prints it. */
export interface DigRecord {
  /** Owner name, as printed (with trailing dot). */
  name: string;
  ttl: number;
  /** Class, normally `IN`. */
  class: string;
  type: string;
  /** The rest of the line (for TXT: the quoted strings, see {@linkcode txtStrings}). */
  data: string;
}

/** A parsed dig run. */
export interface DigResult {
  /** `NOERROR`, `NXDOMAIN`, `SERVFAIL`, `FORMERR`…, or `TIMEOUT` when no answer came. */
  status: string;
  /** Header flags, lower case: `qr`, `aa`, `tc`, `rd`, `ra`, `ad`, `cd`. */
  flags: string[];
  /** Message ID from the header (-1 when none). */
  id: number;
  /** Header counts. */
  counts: { query: number; answer: number; authority: number; additional: number };
  question: { name: string; class: string; type: string }[];
  answers: DigRecord[];
  authority: DigRecord[];
  additional: DigRecord[];
  /** EDNS UDP size from the OPT pseudo-section, undefined when the answer had no OPT. */
  ednsUdpSize?: number;
  /** EDNS version when present. */
  ednsVersion?: number;
  /** Bytes received, from `MSG SIZE rcvd`. */
  msgSize?: number;
  /** `UDP` or `TCP`, from the SERVER line. */
  transport?: string;
  /** dig's exit code (0 ok, 9 no reply, 10 internal error …). */
  exitCode: number;
  /** Everything dig printed (stdout then stderr). */
  raw: string;
}

/** Options of {@linkcode dig}. */
export interface DigOptions {
  server: string;
  /** @default 53 */
  port?: number;
  name: string;
  /** @default "A" */
  type?: string;
  /** Query over TCP (`+tcp`). @default false */
  tcp?: boolean;
  /** `true`: dig's default EDNS; `false`: `+noedns`; a number: `+bufsize=N`. @default true */
  edns?: boolean | number;
  /** Source address (`-b`). */
  source?: string;
  /** Per-try wait in seconds (`+time`). @default 2 */
  timeSeconds?: number;
  /** Extra dig options, e.g. `["+ignore", "+dnssec", "+norec"]`. */
  extra?: string[];
  /** Run dig inside this network namespace. */
  netns?: string;
  /** Hard limit on the dig process. @default 10000 */
  timeoutMs?: number;
}

/** Run dig once and parse its output. Never throws for DNS errors; see `status`. */
export async function dig(options: DigOptions): Promise<DigResult> {
  const args = [
    "dig",
    `@${options.server}`,
    "-p",
    String(options.port ?? 53),
    "+tries=1",
    `+time=${options.timeSeconds ?? 2}`,
  ];
  if (options.source) args.push("-b", options.source);
  if (options.tcp) args.push("+tcp");
  const edns = options.edns ?? true;
  if (edns === false) args.push("+noedns");
  else if (typeof edns === "number") args.push(`+bufsize=${edns}`);
  args.push(...(options.extra ?? []));
  args.push(options.name, options.type ?? "A");
  const r = await exec(args, { netns: options.netns, timeoutMs: options.timeoutMs ?? 10_000 });
  return parseDig(r.stdout + r.stderr, r.code);
}

function parseRecord(line: string): DigRecord | undefined {
  const m = /^(\S+)\s+(\d+)\s+(\S+)\s+(\S+)\s*(.*)$/.exec(line);
  if (!m) return undefined;
  return { name: m[1]!, ttl: Number(m[2]), class: m[3]!, type: m[4]!, data: m[5]! };
}

/** Parse dig's default (non-`+short`) output. */
export function parseDig(raw: string, exitCode = 0): DigResult {
  const result: DigResult = {
    status: "TIMEOUT",
    flags: [],
    id: -1,
    counts: { query: 0, answer: 0, authority: 0, additional: 0 },
    question: [],
    answers: [],
    authority: [],
    additional: [],
    exitCode,
    raw,
  };
  let section = "";
  let seenHeader = false;
  for (const line of raw.split("\n")) {
    const header = /->>HEADER<<- opcode: (\S+), status: (\S+), id: (\d+)/.exec(line);
    if (header) {
      // dig prints one header per message; with a TCP retry after TC the last one wins.
      seenHeader = true;
      result.status = header[2]!;
      result.id = Number(header[3]);
      result.answers = [];
      result.authority = [];
      result.additional = [];
      result.question = [];
      continue;
    }
    const flags =
      /^;; flags:([^;]*);\s*QUERY: (\d+), ANSWER: (\d+), AUTHORITY: (\d+), ADDITIONAL: (\d+)/
        .exec(line);
    if (flags) {
      result.flags = flags[1]!.trim().split(/\s+/).filter(Boolean);
      result.counts = {
        query: Number(flags[2]),
        answer: Number(flags[3]),
        authority: Number(flags[4]),
        additional: Number(flags[5]),
      };
      continue;
    }
    const edns = /^; EDNS: version: (\d+), flags:.*; udp: (\d+)/.exec(line);
    if (edns) {
      result.ednsVersion = Number(edns[1]);
      result.ednsUdpSize = Number(edns[2]);
      continue;
    }
    const size = /^;; MSG SIZE\s+rcvd: (\d+)/.exec(line);
    if (size) {
      result.msgSize = Number(size[1]);
      continue;
    }
    const server = /^;; SERVER: .*\((UDP|TCP)\)/.exec(line);
    if (server) {
      result.transport = server[1];
      continue;
    }
    const sec = /^;; (QUESTION|ANSWER|AUTHORITY|ADDITIONAL) SECTION:/.exec(line);
    if (sec) {
      section = sec[1]!;
      continue;
    }
    if (line.trim() === "") {
      section = "";
      continue;
    }
    if (!seenHeader) continue;
    if (section === "QUESTION") {
      const q = /^;(\S+)\s+(\S+)\s+(\S+)/.exec(line);
      if (q) result.question.push({ name: q[1]!, class: q[2]!, type: q[3]! });
    } else if (section && !line.startsWith(";")) {
      const rec = parseRecord(line);
      if (!rec) continue;
      if (section === "ANSWER") result.answers.push(rec);
      else if (section === "AUTHORITY") result.authority.push(rec);
      else if (section === "ADDITIONAL") result.additional.push(rec);
    }
  }
  return result;
}

/** The character-strings of a TXT record's `data` (`"a" "b\"c"` → `["a", 'b"c']`). */
export function txtStrings(data: string): string[] {
  const out: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"/g;
  for (const m of data.matchAll(re)) {
    out.push(
      m[1]!.replace(
        /\\(\d{3}|.)/g,
        (_, e: string) => e.length === 3 ? String.fromCharCode(Number(e)) : e,
      ),
    );
  }
  return out;
}

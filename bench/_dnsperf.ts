/**
 * dnsperf runs, always bounded (`-l` seconds and a hard kill after), pinned to the load core,
 * and what they print: the statistics block and, with `-v`, one line per query
 * (`> NOERROR n1.perf.example A 0.000123`) from which latency percentiles are exact.
 *
 * @module
 */

import { exec } from "../testkit/exec.ts";

/** One dnsperf run. */
export interface DnsperfOptions {
  dnsperf: string;
  taskset: string;
  /** CPU core for `taskset -c`. */
  core: number;
  server: string;
  /** Query file: `NAME TYPE` per line. */
  file: string;
  /** Time limit, seconds (`-l`). */
  seconds: number;
  /** Outstanding queries (`-q`). */
  outstanding: number;
  /** Passes through the file at most (`-n`); absent: loop until the time limit. */
  maxRuns?: number;
  /** Rate limit, queries per second (`-Q`). */
  qps?: number;
  /** Per-query output, for latencies (`-v`). */
  verbose?: boolean;
  /** A query unanswered after this is lost (`-t`), seconds. @default 2 */
  timeout?: number;
}

/** What one run reported. */
export interface DnsperfResult {
  sent: number;
  completed: number;
  lost: number;
  qps: number;
  runTimeS: number;
  /** `NOERROR 1000 (100.00%)` → { NOERROR: 1000 }. */
  rcodes: Record<string, number>;
  /** Per-query latencies in µs, in completion order (only with `verbose`). */
  latenciesUs: number[];
}

function num(text: string, re: RegExp, what: string): number {
  const m = re.exec(text);
  if (!m) throw new Error(`dnsperf output has no ${what}:\n${text.slice(-2000)}`);
  return Number(m[1]);
}

/** Parses dnsperf's output (statistics, and per-query lines when `-v`). */
export function parseDnsperf(out: string): DnsperfResult {
  const rcodes: Record<string, number> = {};
  const codes = /^\s*Response codes:\s*(.*)$/m.exec(out)?.[1] ?? "";
  for (const m of codes.matchAll(/([A-Z]+) (\d+) \(/g)) rcodes[m[1]!] = Number(m[2]);
  const latenciesUs: number[] = [];
  for (const line of out.split("\n")) {
    if (!line.startsWith("> ")) continue;
    const s = Number(line.slice(line.lastIndexOf(" ") + 1));
    if (Number.isFinite(s)) latenciesUs.push(Math.round(s * 1e6)); // printed in whole µs
  }
  return {
    sent: num(out, /Queries sent:\s+(\d+)/, "Queries sent"),
    completed: num(out, /Queries completed:\s+(\d+)/, "Queries completed"),
    lost: num(out, /Queries lost:\s+(\d+)/, "Queries lost"),
    qps: num(out, /Queries per second:\s+([\d.]+)/, "Queries per second"),
    runTimeS: num(out, /Run time \(s\):\s+([\d.]+)/, "Run time"),
    rcodes,
    latenciesUs,
  };
}

/** Runs dnsperf once and parses it; throws when it fails or prints no statistics. */
export async function dnsperf(o: DnsperfOptions): Promise<DnsperfResult> {
  const timeout = o.timeout ?? 2;
  const args = [
    "-c",
    String(o.core),
    o.dnsperf,
    "-s",
    o.server,
    "-p",
    "53",
    "-d",
    o.file,
    "-l",
    String(o.seconds),
    "-q",
    String(o.outstanding),
    "-t",
    String(timeout),
  ];
  if (o.maxRuns !== undefined) args.push("-n", String(o.maxRuns));
  if (o.qps !== undefined) args.push("-Q", String(Math.round(o.qps)));
  if (o.verbose) args.push("-v");
  const r = await exec([o.taskset, ...args], {
    timeoutMs: (o.seconds + timeout + 15) * 1000,
    env: { LC_ALL: "C" },
  });
  if (r.code !== 0 || r.timedOut) {
    const why = r.timedOut
      ? " (killed: over its time limit)"
      : r.code > 128
      ? ` (signal ${r.code - 128} from outside the bench)`
      : "";
    throw new Error(
      `dnsperf ${args.slice(2).join(" ")} exited ${r.code}${why}\n` +
        `${r.stdout.slice(-1500)}\n${r.stderr.slice(-1500)}`,
    );
  }
  return parseDnsperf(r.stdout);
}

/** Nearest-rank percentile of unsorted `values` (p in 0..100); NaN when empty. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const s = Float64Array.from(values).sort();
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

/** Writes a dnsperf query file (`NAME TYPE` per line) and returns its path. */
export async function queryFile(
  dir: string,
  label: string,
  queries: Iterable<[string, string]>,
): Promise<string> {
  const path = `${dir}/${label}.txt`;
  const lines: string[] = [];
  for (const [name, type] of queries) lines.push(`${name} ${type}`);
  await Deno.writeTextFile(path, lines.join("\n") + "\n");
  return path;
}

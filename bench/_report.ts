/**
 * The bench's figures per server and run, the markdown table with the ratios pvdns/dnsmasq,
 * pvdns/Unbound and pvdns/floor, and the verdict on each target of issue 7.
 *
 * @module
 */

import type { CpuTicks } from "./_system.ts";

/** The servers measured, in table order. */
export const SERVERS = ["pvdns", "dnsmasq", "unbound", "floor"] as const;
export type ServerName = typeof SERVERS[number];

const LABEL: Record<ServerName, string> = {
  pvdns: "pvdns",
  dnsmasq: "dnsmasq",
  unbound: "Unbound",
  floor: "floor (bare Deno proxy)",
};

/** Latency and loss at a fixed rate. */
export interface FixedRate {
  qps: number;
  sent: number;
  /** Queries sent ÷ (rate × seconds): below 1 when the server held dnsperf back. */
  rateReached: number;
  lost: number;
  /** Datagrams dropped at the server's socket (its receive buffer was full). */
  serverDrops: number;
  p50Us: number;
  p99Us: number;
}

/** Everything measured on one server in one run. */
export interface ServerRun {
  hitQps: number;
  hitCompleted: number;
  hitCpuTicks: CpuTicks;
  cpuUsPerQuery: number;
  /** Of it, in the kernel (stime). */
  cpuSysUsPerQuery: number;
  /** Of it, outside the main thread (V8's GC workers, the runtime's threads, children). */
  cpuOffMainUsPerQuery: number;
  at10k: FixedRate;
  atHalf: FixedRate;
  missQps: number;
  missLost: number;
  missP50Us: number;
  /** Median of the same names sent straight to NSD just before. */
  nsdP50Us: number;
  missAddedUs: number;
  rssBeforeKib: number;
  rssAfterKib: number;
  rssEntries: number;
  rssBytesPerEntry: number;
  /** Share of the machine's CPU busy with other work just after the server started (0..1). */
  otherLoad: number;
}

/** Runs per server. */
export type Results = Record<ServerName, ServerRun[]>;

interface Row {
  label: string;
  get: (r: ServerRun) => number;
  digits?: number;
  /** Ratios make no sense (counts of lost queries). */
  noRatio?: boolean;
  /** No ratio against this server, and why (shown in its place). */
  noRatioWith?: { server: ServerName; why: string };
}

const ROWS: Row[] = [
  { label: "cache-hit QPS at saturation (1,000 names)", get: (r) => r.hitQps },
  { label: "server CPU µs per cache-hit query", get: (r) => r.cpuUsPerQuery, digits: 2 },
  { label: "… of it in the kernel (stime)", get: (r) => r.cpuSysUsPerQuery, digits: 2 },
  { label: "… of it off the main thread", get: (r) => r.cpuOffMainUsPerQuery, digits: 2 },
  { label: "p50 µs at 10,000 QPS", get: (r) => r.at10k.p50Us },
  { label: "p99 µs at 10,000 QPS", get: (r) => r.at10k.p99Us },
  { label: "lost at 10,000 QPS", get: (r) => r.at10k.lost, noRatio: true },
  { label: "p50 µs at half pvdns's saturation", get: (r) => r.atHalf.p50Us },
  { label: "p99 µs at half pvdns's saturation", get: (r) => r.atHalf.p99Us },
  { label: "lost at half pvdns's saturation", get: (r) => r.atHalf.lost, noRatio: true },
  {
    label: "… of them dropped at the server's socket",
    get: (r) => r.atHalf.serverDrops,
    noRatio: true,
  },
  { label: "cache-miss QPS (10,000 distinct names)", get: (r) => r.missQps },
  { label: "cache-miss median µs (paced, 3,000 QPS)", get: (r) => r.missP50Us },
  { label: "… NSD direct median µs, same names", get: (r) => r.nsdP50Us },
  { label: "cache-miss median added over NSD µs", get: (r) => r.missAddedUs },
  { label: "RSS MiB of the fresh process", get: (r) => r.rssBeforeKib / 1024, digits: 1 },
  { label: "RSS MiB after 100,000 names", get: (r) => r.rssAfterKib / 1024, digits: 1 },
  {
    label: "RSS bytes per cached entry",
    get: (r) => r.rssBytesPerEntry,
    noRatioWith: { server: "dnsmasq", why: "— (allocated at start)" },
  },
];

function fmt(v: number, digits = 0): string {
  if (!Number.isFinite(v)) return "—";
  return v.toLocaleString("en-US", {
    maximumFractionDigits: digits,
    minimumFractionDigits: digits,
  });
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

function ratio(a: number[], b: number[]): string {
  const x = mean(a), y = mean(b);
  return y > 0 && Number.isFinite(x) ? `${fmt(x / y, 2)}×` : "—";
}

/** The table: one row per figure, a column per server (run 1 / run 2), then the ratios. */
export function markdownTable(results: Results, halfQps: number[], runs: number): string {
  const head = [
    "figure",
    ...SERVERS.map((s) => LABEL[s]),
    "pvdns/dnsmasq",
    "pvdns/Unbound",
    "pvdns/floor",
  ];
  const lines = [`| ${head.join(" | ")} |`, `|${head.map(() => "---").join("|")}|`];
  for (const row of ROWS) {
    const values = (s: ServerName) => results[s].map(row.get);
    const cells = SERVERS.map((s) => values(s).map((v) => fmt(v, row.digits)).join(" / "));
    const ratios = (["dnsmasq", "unbound", "floor"] as const).map((s) => {
      if (row.noRatio) return "—";
      if (row.noRatioWith?.server === s) return row.noRatioWith.why;
      return ratio(values("pvdns"), values(s));
    });
    lines.push(`| ${[row.label, ...cells, ...ratios].join(" | ")} |`);
  }
  const cells = runs === 1 ? "Cells are one run" : "Cells are run 1 / run 2";
  lines.push(
    "",
    `${cells}; ratios are of the means of the runs. Half of pvdns's saturation: ` +
      `${halfQps.map((q) => fmt(q)).join(" / ")} QPS.`,
  );
  const other = Math.max(...SERVERS.flatMap((s) => results[s].map((r) => r.otherLoad)));
  if (other > 0.05) {
    lines.push(
      `Warning: the machine was up to ${fmt(other * 100)}% busy with other work while the bench ` +
        "ran (measured while the bench's own processes were idle); p99 and lost queries suffer " +
        "first.",
    );
  }
  return lines.join("\n");
}

/** One target of issue 7 and how it came out. */
export interface Verdict {
  target: string;
  /** The measured value per run, as shown. */
  values: string[];
  /** true when every run meets it. */
  holds: boolean;
  /** Some runs meet it, some do not. */
  mixed: boolean;
}

function judge(target: string, perRun: number[], ok: (v: number) => boolean, unit: string) {
  const passes = perRun.map(ok);
  return {
    target,
    values: perRun.map((v) => `${fmt(v, unit === "×" ? 2 : 0)}${unit}`),
    holds: passes.every(Boolean),
    mixed: passes.some(Boolean) && !passes.every(Boolean),
  };
}

/** The targets of issue 7, each judged per run. */
export function verdicts(r: Results): Verdict[] {
  const runs = r.pvdns.map((_, i) => i);
  const per = (f: (i: number) => number) => runs.map(f);
  const p = r.pvdns, d = r.dnsmasq, f = r.floor;
  return [
    judge(
      "cache-hit CPU per query ≤ 1.25× floor",
      per((i) => p[i]!.cpuUsPerQuery / f[i]!.cpuUsPerQuery),
      (v) => v <= 1.25,
      "×",
    ),
    judge(
      "cache-hit CPU per query ≤ 2× dnsmasq",
      per((i) => p[i]!.cpuUsPerQuery / d[i]!.cpuUsPerQuery),
      (v) => v <= 2,
      "×",
    ),
    judge(
      "cache-hit QPS ≥ 0.6× dnsmasq",
      per((i) => p[i]!.hitQps / d[i]!.hitQps),
      (v) => v >= 0.6,
      "×",
    ),
    judge("p99 at 10,000 QPS ≤ 500 µs", per((i) => p[i]!.at10k.p99Us), (v) => v <= 500, " µs"),
    judge(
      "zero lost at half pvdns's saturation",
      per((i) => p[i]!.atHalf.lost),
      (v) => v === 0,
      " lost",
    ),
    judge(
      "… at the full rate (sent ≥ 99% of rate × time)",
      per((i) => Math.round(p[i]!.atHalf.rateReached * 1000) / 10),
      (v) => v >= 99,
      "%",
    ),
    judge(
      "… zero dropped by pvdns itself (its socket)",
      per((i) => p[i]!.atHalf.serverDrops),
      (v) => v === 0,
      " dropped",
    ),
    judge(
      "cache-miss median added over NSD ≤ 100 µs",
      per((i) => p[i]!.missAddedUs),
      (v) => v <= 100,
      " µs",
    ),
    judge(
      "RSS per cached entry ≤ 1 KB",
      per((i) => p[i]!.rssBytesPerEntry),
      (v) => v <= 1024,
      " B",
    ),
  ];
}

/** The verdicts as a markdown table. */
export function verdictTable(vs: Verdict[]): string {
  const lines = ["| target (pvdns) | run 1 / run 2 | holds |", "|---|---|---|"];
  for (const v of vs) {
    const word = v.holds ? "yes" : v.mixed ? "in one run only" : "no";
    lines.push(`| ${v.target} | ${v.values.join(" / ")} | ${word} |`);
  }
  return lines.join("\n");
}

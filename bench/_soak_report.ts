/**
 * The figures of the soak (`bench/soak.ts`): RSS samples of pvdns, its V8 heap from its own
 * metrics, and the markdown summary printed at the end.
 *
 * @module
 */

import type { DnsperfResult } from "./_dnsperf.ts";
import { type Sample, total } from "./_soak_metrics.ts";
import type { LogScan } from "./_soak_upstreams.ts";

/** A VmRSS reading of pvdns. */
export interface RssSample {
  /** Seconds since the load started. */
  t: number;
  rssKib: number;
  /** /proc/loadavg, 1 min: how busy the whole (shared) machine is. */
  load1: number;
  /** From pvdns's own process metrics (prom-client), on the samples that scraped them. */
  heapUsedKib?: number;
  heapTotalKib?: number;
  externalKib?: number;
}

/** V8 heap used and total, and external memory, of pvdns, from its `/metrics`. */
export function heap(samples: readonly Sample[]) {
  const kib = (name: string) => Math.round(total(samples, name) / 1024);
  return {
    heapUsedKib: kib("pvdns_nodejs_heap_size_used_bytes"),
    heapTotalKib: kib("pvdns_nodejs_heap_size_total_bytes"),
    externalKib: kib("pvdns_nodejs_external_memory_bytes"),
  };
}

/** What the soak measured (the part the summary shows; the JSON has more). */
export type SoakResult = {
  workingTree: { commit: string; changedFiles: string[] };
  setup: { minutes: number; qps: number; flapPeriodS: number; downS: number };
  dnsperf: DnsperfResult;
  servfail: { pvdnsServfailByPvd: Record<string, number> };
  udpDrops: { pvdns: number; dnsperfAtLastSample: number };
  metrics: {
    requestsByProto: Record<string, number>;
    responsesByPvd: Record<string, number>;
    responsesByPvdRcodeSource: Record<string, number>;
    upstreamQueries: Record<string, number>;
    upstreamErrors: Record<string, number>;
    limitReached: Record<string, number>;
    cacheEntriesMiddle: Record<string, number>;
    cacheEntriesEnd: Record<string, number>;
  };
  rss: {
    beforeLoad: RssSample;
    start?: RssSample;
    middle?: RssSample;
    end?: RssSample;
    idle5sAfter?: RssSample;
    growthKib?: number;
    secondHalfGrowthKib?: number;
  };
  upstreamLogs: Record<string, LogScan>;
  a2QueriesByInstance: number[];
  slowUpstream: { udpQueries: number };
  flapEvents: string[];
  pvdnsCpu?: { seconds: number; kernelSeconds: number; usPerQuery: number };
  failures: string[];
};

/** `{ "x/y": 1 }` → `x/y 1, …` (sorted). */
const list = (o: Record<string, number>) =>
  Object.entries(o).sort().map(([k, v]) => `${k} ${v}`).join(", ") || "none";

/** The markdown summary of one soak. */
export function summary(r: SoakResult): string {
  const p = r.dnsperf;
  const mib = (k?: number) => k === undefined ? "?" : (k / 1024).toFixed(1);
  const logs = r.upstreamLogs;
  const m = r.rss;
  const at = (sample: RssSample | undefined, key: "rssKib" | "heapUsedKib" | "externalKib") =>
    mib(sample?.[key]);
  return [
    `## pvdns soak: ${r.setup.minutes} min at ${r.setup.qps} QPS, two PvDs, A2 killed every ` +
    `${r.setup.flapPeriodS} s (down ${r.setup.downS} s), B's server 100–300 ms`,
    "",
    `Working tree at ${r.workingTree.commit}` +
    (r.workingTree.changedFiles.length
      ? ` with ${r.workingTree.changedFiles.length} changed files (see the JSON)`
      : "") +
    ".",
    "",
    "| figure | value |",
    "| --- | --- |",
    `| queries sent / answered / lost (dnsperf) | ${p.sent} / ${p.completed} / ${p.lost} |`,
    `| rcodes (dnsperf) | ${list(p.rcodes)} |`,
    `| queries received / answered by pvdns | ${list(r.metrics.requestsByProto)} / ` +
    `${list(r.metrics.responsesByPvd)} |`,
    `| datagrams dropped by the kernel at pvdns's / dnsperf's sockets | ${r.udpDrops.pvdns} / ` +
    `${r.udpDrops.dnsperfAtLastSample} (full receive buffer) |`,
    `| SERVFAIL sent by pvdns, by PvD | ${list(r.servfail.pvdnsServfailByPvd)} |`,
    `| responses by PvD/rcode/source | ${list(r.metrics.responsesByPvdRcodeSource)} |`,
    `| upstream queries by PvD/server | ${list(r.metrics.upstreamQueries)} |`,
    `| upstream errors by PvD/server/reason | ${list(r.metrics.upstreamErrors)} |`,
    `| queries dropped at a bound (pvdns_limit_reached_total) | ${list(r.metrics.limitReached)} |`,
    `| cache entries middle / end | ${list(r.metrics.cacheEntriesMiddle)} / ` +
    `${list(r.metrics.cacheEntriesEnd)} |`,
    `| pvdns RSS MiB before load / start (5 s) / middle / end / 5 s idle after | ` +
    `${at(m.beforeLoad, "rssKib")} / ${at(m.start, "rssKib")} / ${at(m.middle, "rssKib")} / ` +
    `${at(m.end, "rssKib")} / ${at(m.idle5sAfter, "rssKib")} |`,
    `| RSS growth MiB, start→end / middle→end | ${mib(m.growthKib)} / ` +
    `${mib(m.secondHalfGrowthKib)} |`,
    `| V8 heap used MiB before load / start / middle / end | ${at(m.beforeLoad, "heapUsedKib")} ` +
    `/ ${at(m.start, "heapUsedKib")} / ${at(m.middle, "heapUsedKib")} / ` +
    `${at(m.end, "heapUsedKib")} |`,
    `| external memory MiB before load / start / middle / end | ` +
    `${at(m.beforeLoad, "externalKib")} / ${at(m.start, "externalKib")} / ` +
    `${at(m.middle, "externalKib")} / ${at(m.end, "externalKib")} |`,
    `| queries logged at A1 / A2 / B (own zone) | ${logs.A1!.own} / ${logs.A2!.own} / ` +
    `${logs.B!.own} (slow forwarder: ${r.slowUpstream.udpQueries}) |`,
    `| queries of the other PvD at A1 / A2 / B | ${logs.A1!.foreign} / ${logs.A2!.foreign} / ` +
    `${logs.B!.foreign} |`,
    `| health probes (. NS) at A1 / A2 / B | ${logs.A1!.probes} / ${logs.A2!.probes} / ` +
    `${logs.B!.probes} |`,
    `| A2 kills / restarts | ${r.flapEvents.filter((e) => e.includes("killed")).length} / ` +
    `${r.flapEvents.filter((e) => e.includes("started")).length} (queries per life: ` +
    `${r.a2QueriesByInstance.join(", ")}) |`,
    `| pvdns CPU during the load: s (kernel s), µs per answered query | ` +
    `${r.pvdnsCpu?.seconds.toFixed(1)} (${r.pvdnsCpu?.kernelSeconds.toFixed(1)}), ` +
    `${r.pvdnsCpu?.usPerQuery} |`,
    `| machine load (1 min avg) start / middle / end | ${m.start?.load1} / ${m.middle?.load1} / ` +
    `${m.end?.load1} ` +
    `(${navigator.hardwareConcurrency} cores, shared) |`,
    "",
    r.failures.length ? `**FAIL**\n${r.failures.map((f) => `- ${f}`).join("\n")}` : "**PASS**: " +
      "no query of one PvD at the other PvD's servers, none from a wrong source address",
  ].join("\n");
}

/**
 * Datagrams the kernel dropped at the UDP sockets `pid` holds (the `drops` column of
 * `/proc/net/udp` and `/proc/net/udp6` for the socket inodes in `/proc/PID/fd`): a full receive
 * buffer, i.e. the process did not read fast enough. 0 when the process is gone.
 */
export function udpDrops(pid: number): number {
  const inodes = new Set<string>();
  try {
    for (const fd of Deno.readDirSync(`/proc/${pid}/fd`)) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(Deno.readLinkSync(`/proc/${pid}/fd/${fd.name}`));
        if (m) inodes.add(m[1]!);
      } catch { /* closed meanwhile */ }
    }
  } catch {
    return 0; // gone
  }
  let drops = 0;
  for (const table of ["/proc/net/udp", "/proc/net/udp6"]) {
    let text = "";
    try {
      text = Deno.readTextFileSync(table);
    } catch {
      continue; // no IPv6
    }
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length >= 13 && inodes.has(f[9]!)) drops += Number(f.at(-1));
    }
  }
  return drops;
}

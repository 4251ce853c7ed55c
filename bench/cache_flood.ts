/**
 * Issue 13's attack as a bench: a flood of distinct names whose answers are large (~4 KB and
 * ~60 KB TXT sets), through pvdns run as users run it (`main.ts serve` with the start task's V8
 * flags and permissions, every cache key at its default) and through Unbound as a forwarder to
 * the same upstream, one after the other in the same run. VmRSS (`/proc/PID/status`) of each is
 * read fresh, every 250 ms during the flood (the peak), and 2 s after it (the end).
 *
 * NSD serves `*.k4.flood.example` (4,192-byte answers) and `*.k60.flood.example` (60,260): over
 * the 1,232 bytes both forwarders advertise, so every miss is a truncated UDP answer and then a
 * TCP exchange. dnsperf asks each name once (UDP, no EDNS: the client gets TC; the forwarder
 * still fetches, and may cache, the whole answer). Layout: the server under test alone on core
 * 1; dnsperf and NSD on core 0. Only loopback; every loop is bounded in count and time.
 *
 * Usage (as root): `deno run -A bench/cache_flood.ts [--seconds 60] [--qps 2000]
 * [--max-bytes N] [--max-entry-bytes N] [--unbound-cache 4m]` (`--max-*`: pvdns's
 * `cache.maxBytes`/`cache.maxEntryBytes` instead of their defaults; `--unbound-cache`: Unbound's
 * msg-cache-size, the rrset cache twice that; default Unbound's own defaults, 4m and 4m). Prints
 * a markdown table and writes `bench/results/cache-flood-*.json`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { sleep } from "../testkit/exec.ts";
import { loopbackAddress } from "../testkit/loopback.ts";
import {
  configPermissions,
  pvdnsArgv,
  REPO_ROOT,
  servePermissions,
} from "../testkit/pvdns_process.ts";
import { dnsperf, type DnsperfResult, queryFile } from "./_dnsperf.ts";
import { type Daemon, spawnPinned, startNsdZone, startUnboundForwarder } from "./_servers.ts";
import { scrapeMetrics, total } from "./_soak_metrics.ts";
import { ensureTools, killAll, killChildrenOnSignal, rssKib } from "./_system.ts";

const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    seconds: { type: "string", default: "60" },
    qps: { type: "string", default: "2000" },
    "max-bytes": { type: "string" },
    "max-entry-bytes": { type: "string" },
    "unbound-cache": { type: "string" },
  },
});
const SECONDS = Number(args.seconds);
const QPS = Number(args.qps);
if (!(SECONDS >= 1 && SECONDS <= 3600) || !(QPS >= 1 && QPS <= 100_000)) {
  throw new Error("--seconds must be 1–3600 and --qps 1–100000");
}
const SERVER_CORE = 1;
const LOAD_CORE = 0;
const SAMPLE_MS = 250;
/** Not under `test.`: Unbound answers that (RFC 6761) locally with NXDOMAIN by default. */
const ORIGIN = "flood.example";
/** The answer sizes: a wildcard TXT of `strings` strings of 255 bytes each. */
const SIZES = [
  { label: "~4 KB", zone: "k4", strings: 16 },
  { label: "~60 KB", zone: "k60", strings: 235 },
] as const;
const SERVERS = ["pvdns", "unbound"] as const;

const log = (line: string) => console.error(`[cache-flood] ${line}`);

/** The zone: SOA, NS, and one wildcard TXT per size. */
function zoneText(nsAddress: string): string {
  const text = `"${"x".repeat(255)}"`;
  return [
    `$ORIGIN ${ORIGIN}.`,
    "$TTL 3600",
    "@ IN SOA ns hostmaster 1 3600 600 86400 3600",
    "@ IN NS ns",
    `ns IN A ${nsAddress}`,
    ...SIZES.map((s) => `*.${s.zone} IN TXT ${Array(s.strings).fill(text).join(" ")}`),
  ].join("\n") + "\n";
}

function startNsd(nsd: string, taskset: string, address: string): Promise<Daemon> {
  const zone = zoneText(address);
  return startNsdZone({ nsd, taskset }, {
    address,
    origin: ORIGIN,
    zone,
    core: LOAD_CORE,
    tcpCount: 1000,
  });
}

function startUnbound(
  unbound: string,
  taskset: string,
  address: string,
  nsd: string,
): Promise<Daemon> {
  const cache = args["unbound-cache"];
  const tuning = cache
    ? `  msg-cache-size: ${cache}\n  rrset-cache-size: ${
      cache.replace(/^(\d+)/, (n) => String(2 * Number(n)))
    }\n`
    : "";
  return startUnboundForwarder({ unbound, taskset }, { address, nsd, core: SERVER_CORE, tuning });
}

/** pvdns as `deno task start` runs it (its V8 flags and permissions), metrics on. */
async function startPvdns(
  taskset: string,
  address: string,
  metrics: string,
  nsd: string,
): Promise<Daemon> {
  const dir = await Deno.makeTempDir({ prefix: "pvdns-flood-pvdns-" });
  const cache: Record<string, number> = {};
  if (args["max-bytes"]) cache.maxBytes = Number(args["max-bytes"]);
  if (args["max-entry-bytes"]) cache.maxEntryBytes = Number(args["max-entry-bytes"]);
  const config = {
    listen: [`${address}:53`],
    metrics: { listen: `${metrics}:9153` },
    pvds: [{
      id: "flood.example",
      sourceAddresses: [loopbackAddress({ port: 0 })],
      servers: [nsd],
      default: true,
    }],
    cache,
  };
  const path = `${dir}/pvdns.jsonc`;
  const text = JSON.stringify(config, null, 2);
  await Deno.writeTextFile(path, text);
  return spawnPinned({
    name: "pvdns",
    address,
    argv: pvdnsArgv(
      ["serve", "--config", path],
      servePermissions(configPermissions(text, path)),
    ),
    cwd: REPO_ROOT,
    core: SERVER_CORE,
    taskset,
    readyLine: /^pvdns: ready/,
    dir,
  });
}

/** One server's run with one answer size. */
interface FloodRun {
  server: (typeof SERVERS)[number];
  size: string;
  answered: number;
  qps: number;
  rcodes: Record<string, number>;
  freshKib: number;
  peakKib: number;
  endKib: number;
  /** pvdns only: its cache at the end, from /metrics. */
  cacheBytes?: number;
  cacheEntries?: number;
  notCached?: number;
  /** pvdns only: V8 heap used and external memory at the end (bytes). */
  heapUsed?: number;
  external?: number;
  /** VmRSS every {@linkcode SAMPLE_MS} during the flood, KiB. */
  samplesKib: number[];
}

/** Runs dnsperf while sampling VmRSS of `d`; the peak over the samples (and the end). */
async function flood(
  tools: { dnsperf: string; taskset: string },
  d: Daemon,
  file: string,
): Promise<{ result: DnsperfResult; samplesKib: number[] }> {
  const samplesKib = [rssKib(d.pid)];
  let running = true;
  const run = dnsperf({
    dnsperf: tools.dnsperf,
    taskset: tools.taskset,
    core: LOAD_CORE,
    server: d.address,
    file,
    seconds: SECONDS,
    outstanding: 100,
    maxRuns: 1,
    qps: QPS,
  }).finally(() => running = false);
  const deadline = Date.now() + (SECONDS + 30) * 1000;
  while (running && Date.now() < deadline) {
    await Promise.race([run.catch(() => {}), sleep(SAMPLE_MS)]);
    samplesKib.push(rssKib(d.pid));
  }
  return { result: await run, samplesKib };
}

const MIB = 1024;
const mib = (kib: number) => (kib / MIB).toFixed(1);

function table(runs: readonly FloodRun[]): string {
  const rows = [
    "| answers | server  | answered (QPS)   | RSS fresh MiB | RSS peak MiB | RSS end MiB | pvdns at the end: cache; memory |",
    "| ------- | ------- | ---------------- | ------------- | ------------ | ----------- | ------------------------------- |",
  ];
  for (const r of runs) {
    const cache = r.cacheBytes === undefined
      ? ""
      : `${mib(r.cacheBytes / 1024)} MiB, ${r.cacheEntries} entries, ${r.notCached} not ` +
        `cached; V8 heap ${mib(r.heapUsed! / 1024)}, external ${mib(r.external! / 1024)} MiB`;
    rows.push(
      `| ${r.size} | ${r.server} | ${r.answered} (${Math.round(r.qps)}) | ${mib(r.freshKib)} | ` +
        `${mib(r.peakKib)} | ${mib(r.endKib)} | ${cache} |`,
    );
  }
  return rows.join("\n");
}

killChildrenOnSignal();
const found = await ensureTools(log);
const tools = { dnsperf: found.dnsperf, taskset: found.taskset };
const addr = {
  nsd: loopbackAddress(),
  server: loopbackAddress(),
  metrics: loopbackAddress({ port: 9153 }),
};
const dir = await Deno.makeTempDir({ prefix: "pvdns-flood-" });
const names = SECONDS * QPS + 1000; // more than dnsperf can ask in the time: each name once
const runs: FloodRun[] = [];
let nsd: Daemon | undefined;
try {
  nsd = await startNsd(found.nsd, found.taskset, addr.nsd);
  for (const size of SIZES) {
    const file = await queryFile(
      dir,
      size.zone,
      function* () {
        for (let i = 0; i < names; i++) {
          yield [`n${i}.${size.zone}.${ORIGIN}`, "TXT"] as [string, string];
        }
      }(),
    );
    for (const server of SERVERS) {
      const d = server === "pvdns"
        ? await startPvdns(found.taskset, addr.server, addr.metrics, addr.nsd)
        : await startUnbound(found.unbound, found.taskset, addr.server, addr.nsd);
      try {
        await sleep(1000); // start-up settled
        const freshKib = rssKib(d.pid);
        log(`${server}, ${size.label} answers: ${SECONDS} s at up to ${QPS} QPS`);
        const { result, samplesKib } = await flood(tools, d, file);
        await sleep(2000);
        const endKib = rssKib(d.pid);
        const run: FloodRun = {
          server,
          size: size.label,
          answered: result.completed,
          qps: result.qps,
          rcodes: result.rcodes,
          freshKib,
          peakKib: Math.max(endKib, ...samplesKib),
          endKib,
          samplesKib,
        };
        if (server === "pvdns") {
          const m = await scrapeMetrics(addr.metrics, 9153);
          run.cacheBytes = total(m, "pvdns_cache_bytes");
          run.cacheEntries = total(m, "pvdns_cache_entries");
          run.notCached = total(m, "pvdns_limit_reached_total", { limit: "cache_entry_bytes" });
          run.heapUsed = total(m, "pvdns_nodejs_heap_size_used_bytes");
          run.external = total(m, "pvdns_nodejs_external_memory_bytes");
        }
        log(`${server}: RSS ${mib(freshKib)} → peak ${mib(run.peakKib)}, end ${mib(endKib)} MiB`);
        runs.push(run);
      } finally {
        await d.stop();
      }
    }
  }
} finally {
  await nsd?.stop();
  killAll();
  await Deno.remove(dir, { recursive: true }).catch(() => {});
}

const setup = `${SECONDS} s per server and size, dnsperf at up to ${QPS} QPS (-q 100), ` +
  `distinct names; pvdns cache ${
    JSON.stringify({
      maxBytes: args["max-bytes"] ?? "default",
      maxEntryBytes: args["max-entry-bytes"] ?? "default",
    })
  }; Unbound caches ${args["unbound-cache"] ?? "default (4m + 4m)"}`;
console.log(`${setup}\n\n${table(runs)}`);
await Deno.mkdir(`${REPO_ROOT}/bench/results`, { recursive: true });
const out = `${REPO_ROOT}/bench/results/cache-flood-${
  new Date().toISOString().replace(/:/g, "-")
}.json`;
await Deno.writeTextFile(
  out,
  JSON.stringify({ setup, seconds: SECONDS, qps: QPS, args, runs, deno: Deno.version }, null, 2),
);
log(`wrote ${out}`);

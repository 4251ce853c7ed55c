/**
 * `deno task bench`: pvdns side by side with dnsmasq, Unbound and the bare Deno proxy (the
 * runtime's floor), all forwarding to one NSD on loopback and caching, loaded by dnsperf
 * (issue 7). Run as root on a machine with at least 2 cores: the server under test runs alone on
 * core 1 (with NSD, which only works on cache misses), dnsperf alone on core 0. Nothing leaves
 * loopback.
 *
 * Each run starts every server afresh, one at a time, and measures it:
 * 0. RSS (VmRSS) of the fresh process before and after 100,000 distinct names (all misses), ÷
 *    names answered: the growth is the cache (and garbage not yet collected, for Deno);
 * 1. cache hits at saturation: 1,000 questions warmed by one pass, then dnsperf for a few seconds;
 *    server CPU µs per query = Δ(utime+stime) of the process (threads and children) ÷ completed;
 * 2. p50/p99 latency and lost queries at a fixed 10,000 QPS, and at half of pvdns's saturation rate
 *    of the same run (dnsperf `-v`: every query's latency, exact percentiles);
 * 3. cache misses: 10,000 distinct questions once each at `-q 100` (QPS); then 10,000 other
 *    distinct questions paced at 3,000 QPS (`-Q 3000 -v`, one at a time in effect), in 5 slices
 *    sent to NSD directly and then to the server in turns: the added median is the server's
 *    median minus NSD's, each over all its slices.
 * It prints a markdown table (runs side by side, ratios) and the verdict on each target, and
 * writes everything as JSON to `bench/results/`.
 *
 * Usage: `deno run -A bench/run.ts [--quick] [--only=pvdns,floor]` (`--quick`: one run, short
 * phases; `--only`: just those servers, their figures as JSON: both for a try-out).
 *
 * @module
 */

import { exec, sleep } from "../testkit/exec.ts";
import { loopbackAddress } from "../testkit/loopback.ts";
import { dnsperf, type DnsperfResult, percentile, queryFile } from "./_dnsperf.ts";
import {
  markdownTable,
  type Results,
  type ServerName,
  type ServerRun,
  SERVERS,
  verdicts,
  verdictTable,
} from "./_report.ts";
import {
  type Daemon,
  nameAt,
  type Programs,
  startDnsmasq,
  startFloor,
  startNsd,
  startPvdns,
  startUnbound,
  type ZonePlan,
} from "./_servers.ts";
import {
  clockTicks,
  cpuTicks,
  ensureTools,
  killAll,
  killChildrenOnSignal,
  machineBusy,
  rssKib,
  ticksSince,
  udpSocketDrops,
} from "./_system.ts";

const quick = Deno.args.includes("--quick");
/** `--only pvdns,floor`: measure just these (a try-out: no table, no verdicts, no JSON). */
const only = Deno.args.find((a) => a.startsWith("--only="))?.slice(7).split(",");
const RUNS = quick ? 1 : 2;
const HIT_SECONDS = quick ? 2 : 5;
const FIXED_SECONDS = quick ? 2 : 4;
const HIT_OUTSTANDING = 200;
const SERVER_CORE = 1;
const LOAD_CORE = 0;
const CACHE_SIZE = 200_000;
/**
 * Cache-miss latency: each question once, paced at 3,000 QPS (one every 333 µs, longer than a
 * miss takes, so each is alone on the path), with every latency printed. Not `-q 1`: dnsperf 2.10
 * then stalls for milliseconds between queries, worse with `-v`.
 */
const MISS_LATENCY_LOAD = { seconds: 30, outstanding: 100, maxRuns: 1, qps: 3000, verbose: true };
/**
 * The miss latency set is asked in slices, NSD direct and the server in turns (A B A B …), so
 * that a machine that slows down or speeds up between the two measurements (NSD's own median
 * moved between 51 and 87 µs from run to run) does not count as the server's added latency.
 */
const MISS_LATENCY_SLICES = 5;

/** Question ranges in the zone: each set is fresh (never asked before) where it must be. */
const SETS = {
  hit: [0, 1_000],
  missQps: [1_000, 11_000],
  missLatency: [11_000, 21_000],
  rss: [21_000, 121_000],
} as const;
const PLAN: ZonePlan = { origin: "perf.example", total: 121_000, dual: 21_000 };

const log = (line: string) => console.error(`[bench] ${line}`);

function* questions(range: readonly [number, number], both: boolean): Generator<[string, string]> {
  for (let i = range[0]; i < range[1]; i++) {
    yield [nameAt(PLAN, i), both && i % 2 === 1 ? "AAAA" : "A"];
  }
}

interface Files {
  hit: string;
  missQps: string;
  /** The miss latency set in {@linkcode MISS_LATENCY_SLICES} slices, asked in turns (ABAB). */
  missLatency: string[];
  rss: string;
}

interface Ctx {
  p: Programs & { dnsperf: string };
  files: Files;
  nsd: Daemon;
  clk: number;
}

function load(c: Ctx, server: string, file: string, o: {
  seconds: number;
  outstanding: number;
  maxRuns?: number;
  qps?: number;
  verbose?: boolean;
}): Promise<DnsperfResult> {
  return dnsperf({
    dnsperf: c.p.dnsperf,
    taskset: c.p.taskset,
    core: LOAD_CORE,
    server,
    file,
    ...o,
  });
}

function expectAllNoerror(what: string, r: DnsperfResult, n: number): void {
  if (r.completed !== n || r.rcodes.NOERROR !== n) {
    throw new Error(
      `${what}: expected ${n} NOERROR answers, got ${r.completed} completed, ` +
        `rcodes ${JSON.stringify(r.rcodes)}`,
    );
  }
}

/**
 * Queries dnsperf may have outstanding at a fixed rate: 200 cover a 3.5 ms stall of the server at
 * 57,000 QPS. Not 1,000: dnsperf sends its first `-q` queries in one burst, and 1,000 datagrams at
 * once overflow a 208 KiB socket buffer (the server's or dnsperf's own), so every server "lost" a
 * constant 500–800 queries whatever the run's length (dnsmasq alone: 556, 532, 550 with `-l 4`,
 * `-l 8`, `-n 220` at 55,000 QPS; 0 with `-q 200`). A server that stalls dnsperf instead of losing
 * queries shows as a rate not reached (`rateReached`, judged with the losses).
 */
const FIXED_OUTSTANDING = 200;

async function fixedRate(c: Ctx, server: string, qps: number) {
  const dropsBefore = udpSocketDrops(server, 53);
  const r = await load(c, server, c.files.hit, {
    seconds: FIXED_SECONDS,
    outstanding: FIXED_OUTSTANDING,
    qps,
    verbose: true,
  });
  return {
    qps,
    sent: r.sent,
    rateReached: r.sent / (qps * FIXED_SECONDS),
    lost: r.lost,
    // dnsperf counts as lost what is still unanswered when it stops, which grows when dnsperf
    // itself falls behind; the server's own losses are the drops at its socket.
    serverDrops: udpSocketDrops(server, 53) - dropsBefore,
    p50Us: percentile(r.latenciesUs, 50),
    p99Us: percentile(r.latenciesUs, 99),
  };
}

/** RSS before and after `rss` names (all misses), ÷ names answered. */
async function rssPerEntry(c: Ctx, d: Daemon) {
  await sleep(500); // start-up settled
  const otherLoad = await machineBusy(500); // nothing of ours is working now
  if (otherLoad > 0.05) {
    log(`${d.name}: warning: ${(otherLoad * 100).toFixed(0)}% CPU busy with other work`);
  }
  const rssBeforeKib = rssKib(d.pid);
  const r = await load(c, d.address, c.files.rss, { seconds: 60, outstanding: 100, maxRuns: 1 });
  await sleep(1000);
  const rssAfterKib = rssKib(d.pid);
  log(`${d.name}: RSS ${rssBeforeKib} → ${rssAfterKib} KiB for ${r.completed} names`);
  return {
    otherLoad,
    rssBeforeKib,
    rssAfterKib,
    rssEntries: r.completed,
    rssBytesPerEntry: (rssAfterKib - rssBeforeKib) * 1024 / r.completed,
  };
}

/** Everything measured on one fresh server; `halfQps` undefined = take it from this one. */
async function measure(c: Ctx, d: Daemon, halfQps: number | undefined): Promise<ServerRun> {
  // First, while the process is fresh: its growth is then the cache and nothing else.
  const rss = await rssPerEntry(c, d);

  const hitCount = SETS.hit[1] - SETS.hit[0];
  const warm = await load(c, d.address, c.files.hit, { seconds: 20, outstanding: 20, maxRuns: 1 });
  expectAllNoerror(`${d.name} warm-up`, warm, hitCount);
  const t0 = cpuTicks(d.pid);
  const hit = await load(c, d.address, c.files.hit, {
    seconds: HIT_SECONDS,
    outstanding: HIT_OUTSTANDING,
  });
  const ticks = ticksSince(t0, cpuTicks(d.pid));
  const perQuery = (t: number) => t / c.clk * 1e6 / hit.completed;
  const cpuUsPerQuery = perQuery(ticks.total);
  log(`${d.name}: hits ${Math.round(hit.qps)} QPS, ${cpuUsPerQuery.toFixed(2)} µs CPU/query`);

  const at10k = await fixedRate(c, d.address, 10_000);
  const half = halfQps ?? Math.round(hit.qps / 2);
  const atHalf = await fixedRate(c, d.address, half);
  log(
    `${d.name}: p99 ${at10k.p99Us} µs at 10k QPS, ${atHalf.lost} lost ` +
      `(${atHalf.serverDrops} dropped at its socket) at ${half} QPS`,
  );

  const missN = SETS.missQps[1] - SETS.missQps[0];
  const miss = await load(c, d.address, c.files.missQps, {
    seconds: 30,
    outstanding: 100,
    maxRuns: 1,
  });
  const sliceN = (SETS.missLatency[1] - SETS.missLatency[0]) / MISS_LATENCY_SLICES;
  const directUs: number[] = [], serverUs: number[] = [];
  for (const file of c.files.missLatency) {
    const direct = await load(c, c.nsd.address, file, MISS_LATENCY_LOAD);
    expectAllNoerror("NSD direct", direct, sliceN);
    const missLat = await load(c, d.address, file, MISS_LATENCY_LOAD);
    expectAllNoerror(`${d.name} paced cache misses`, missLat, sliceN);
    directUs.push(...direct.latenciesUs);
    serverUs.push(...missLat.latenciesUs);
  }
  const missP50Us = percentile(serverUs, 50);
  const nsdP50Us = percentile(directUs, 50);
  log(
    `${d.name}: misses ${Math.round(miss.qps)} QPS (${miss.lost}/${missN} lost), ` +
      `median ${missP50Us} µs vs NSD ${nsdP50Us} µs`,
  );

  return {
    hitQps: hit.qps,
    hitCompleted: hit.completed,
    hitCpuTicks: ticks,
    cpuUsPerQuery,
    cpuSysUsPerQuery: perQuery(ticks.sys),
    cpuOffMainUsPerQuery: perQuery(ticks.total - ticks.main),
    at10k,
    atHalf,
    missQps: miss.qps,
    missLost: miss.lost,
    missP50Us,
    nsdP50Us,
    missAddedUs: missP50Us - nsdP50Us,
    ...rss,
  };
}

function start(c: Ctx, name: ServerName): Promise<Daemon> {
  const address = loopbackAddress();
  const nsd = c.nsd.address;
  switch (name) {
    case "pvdns":
      return startPvdns(c.p, address, loopbackAddress({ port: 0 }), nsd, CACHE_SIZE, SERVER_CORE);
    case "dnsmasq":
      return startDnsmasq(c.p, address, nsd, CACHE_SIZE, SERVER_CORE);
    case "unbound":
      return startUnbound(c.p, address, nsd, SERVER_CORE);
    case "floor":
      return startFloor(c.p, address, nsd, SERVER_CORE);
  }
}

async function versions(p: Ctx["p"]): Promise<Record<string, string>> {
  const first = async (argv: string[], re: RegExp) => {
    const r = await exec(argv, { timeoutMs: 5000 });
    return re.exec(r.stdout + r.stderr)?.[1] ?? "?";
  };
  return {
    deno: Deno.version.deno,
    dnsperf: await first([p.dnsperf, "-h"], /Version (\S+)/),
    nsd: await first([p.nsd, "-v"], /NSD version (\S+)/),
    dnsmasq: await first([p.dnsmasq, "-v"], /Dnsmasq version (\S+)/),
    unbound: await first([p.unbound, "-V"], /Version (\S+)/),
  };
}

async function main(): Promise<void> {
  const began = performance.now();
  if (navigator.hardwareConcurrency < 2) throw new Error("the bench needs at least 2 cores");
  killChildrenOnSignal();
  const p = await ensureTools(log);
  const clk = await clockTicks();
  const dir = await Deno.makeTempDir({ prefix: "pvdns-bench-" });
  let nsd: Daemon | undefined;
  try {
    const files: Files = {
      hit: await queryFile(dir, "hit", questions(SETS.hit, true)),
      missQps: await queryFile(dir, "miss-qps", questions(SETS.missQps, true)),
      missLatency: await Promise.all(
        Array.from({ length: MISS_LATENCY_SLICES }, (_, k) => {
          const [from, to] = SETS.missLatency;
          const step = (to - from) / MISS_LATENCY_SLICES;
          const slice = [from + k * step, from + (k + 1) * step] as const;
          return queryFile(dir, `miss-latency-${k}`, questions(slice, true));
        }),
      ),
      rss: await queryFile(dir, "rss", questions(SETS.rss, false)),
    };
    nsd = await startNsd(p, loopbackAddress(), PLAN, SERVER_CORE);
    const c: Ctx = { p, files, nsd, clk };
    const check = await load(c, nsd.address, files.hit, {
      seconds: 10,
      outstanding: 20,
      maxRuns: 1,
    });
    expectAllNoerror("NSD", check, SETS.hit[1] - SETS.hit[0]);
    log(`NSD on ${nsd.address} serves ${PLAN.total} names; ${RUNS} run(s) follow`);

    const results = Object.fromEntries(SERVERS.map((s) => [s, []])) as unknown as Results;
    const halfQps: number[] = [];
    for (let run = 1; run <= RUNS; run++) {
      let half: number | undefined;
      for (const name of SERVERS) {
        if (only && !only.includes(name)) continue;
        log(`run ${run}: ${name}`);
        const d = await start(c, name);
        try {
          const r = await measure(c, d, half).catch((e) => {
            throw new Error(`${(e as Error).message}\n${name} printed:\n${d.output()}`);
          });
          if (name === "pvdns") halfQps.push(half = r.atHalf.qps);
          results[name].push(r);
        } finally {
          await d.stop();
        }
      }
    }

    const seconds = (performance.now() - began) / 1000;
    if (only) {
      console.log(JSON.stringify(results, null, 1));
      return;
    }
    const table = markdownTable(results, halfQps, RUNS);
    const vs = verdicts(results);
    console.log(`${table}\n\n${verdictTable(vs)}\n\nbench time: ${seconds.toFixed(0)} s`);
    const stamp = new Date().toISOString().replace(/[:.]/g, "-");
    const out = new URL(`./results/bench-${stamp}.json`, import.meta.url);
    await Deno.mkdir(new URL("./results/", import.meta.url), { recursive: true });
    await Deno.writeTextFile(
      out,
      JSON.stringify(
        {
          date: new Date().toISOString(),
          seconds,
          quick,
          machine: { cores: navigator.hardwareConcurrency, clockTicks: clk },
          versions: await versions(p),
          setup: { SETS, PLAN, HIT_SECONDS, FIXED_SECONDS, HIT_OUTSTANDING, CACHE_SIZE },
          halfQps,
          results,
          verdicts: vs,
          table,
        },
        null,
        2,
      ),
    );
    log(`wrote ${out.pathname}`);
  } finally {
    await nsd?.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

try {
  await main();
} catch (e) {
  killAll();
  console.error(`[bench] failed: ${(e as Error).stack ?? e}`);
  Deno.exit(1);
}

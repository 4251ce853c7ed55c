/**
 * The soak (issue 8): mixed load from dnsperf at a fixed rate, for 10 minutes, through the two
 * PvDs of one `pvdns serve` process while one upstream flaps and another answers slowly.
 *
 * - PvD A (`a.soak.test`): two dnsmasq servers, A1 and A2; A2 is killed (SIGKILL) every 30 s
 *   and started again on the same address `--down` seconds later.
 * - PvD B (`b.soak.test`, the default PvD): one dnsmasq behind a forwarder that holds every
 *   query 100–300 ms (`_soak_slow_upstream.ts`).
 * - Questions alternate between the PvDs; half are cache hits (200 hot names per zone, TTL 300),
 *   half are names never asked before (`mN.ZONE`), a quarter AAAA.
 *
 * It reports dnsperf's queries sent, answered and lost and its rcodes, pvdns's responses by PvD
 * and rcode from `/metrics`, and VmRSS of pvdns at the start, middle and end of the load. It
 * FAILS (exit 1) when a server of one PvD logged a query for the other PvD's zone (or any name
 * outside its own zone, or from a source address other than its PvD's), when a PvD's servers
 * logged nothing (the check would be empty), or when pvdns died. Writes
 * `bench/results/soak-*.json` and prints a markdown summary. Everything runs on loopback.
 *
 * Usage: `DENO_NO_UPDATE_CHECK=1 deno run -A bench/soak.ts [--minutes 10] [--qps 1500]
 * [--down 10]` (as root: port 53 on loopback addresses).
 *
 * @module
 */

import { exec, sleep } from "../testkit/exec.ts";
import { loopbackAddress } from "../testkit/loopback.ts";
import { type PvdnsProcess, REPO_ROOT, startPvdns } from "../testkit/pvdns_process.ts";
import { buildQuery } from "../testkit/wire.ts";
import { dnsperf, type DnsperfResult, queryFile } from "./_dnsperf.ts";
import { type Sample, scrapeMetrics, sumBy, total } from "./_soak_metrics.ts";
import { heap, type RssSample, summary, udpDrops } from "./_soak_report.ts";
import { type SlowUpstream, startSlowUpstream } from "./_soak_slow_upstream.ts";
import { type LogScan, startZoneServer, type ZoneServer } from "./_soak_upstreams.ts";
import { clockTicks, cpuTicks, descendants, findProgram, rssKib, ticksSince } from "./_system.ts";

function flag(name: string, fallback: number): number {
  const i = Deno.args.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = Number(Deno.args[i + 1]);
  if (!(v > 0)) throw new Error(`--${name}: "${Deno.args[i + 1]}" is not a positive number`);
  return v;
}

const MINUTES = flag("minutes", 10);
const QPS = flag("qps", 1500);
const DOWN_S = flag("down", 10);
const SECONDS = Math.round(MINUTES * 60);
const FLAP_PERIOD_S = 30;
const SAMPLE_EVERY_S = 5;
const HOT_NAMES = 200;
const TTL = 300;
const ZONE_A = "a.soak.test";
const ZONE_B = "b.soak.test";
const DNSPERF_CORE = 0;

const t0 = () => loadStart === 0 ? 0 : (performance.now() - loadStart) / 1000;
let loadStart = 0;
function log(line: string) {
  console.error(`[soak ${t0().toFixed(1).padStart(6)} s] ${line}`);
}

function load1(): number {
  return Number(Deno.readTextFileSync("/proc/loadavg").split(" ")[0]);
}

/** The questions: line i goes to A when even, B when odd; half hot names, half new ones. */
function* questions(count: number): Generator<[string, string]> {
  for (let i = 0; i < count; i++) {
    const zone = i & 1 ? ZONE_B : ZONE_A;
    const k = i >> 1;
    const name = k & 1 ? `m${k >> 1}.${zone}` : `h${(k >> 1) % HOT_NAMES}.${zone}`;
    yield [name, (k >> 1) % 4 === 3 ? "AAAA" : "A"];
  }
}

/** One UDP query through pvdns (at most 3 s); its rcode. */
async function probe(server: string, name: string): Promise<number> {
  const sock = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  const timer = setTimeout(() => sock.close(), 3000);
  try {
    await sock.send(buildQuery(0x5a5a, name), { hostname: server, port: 53, transport: "udp" });
    const [reply] = await sock.receive();
    return reply[3]! & 0x0f;
  } finally {
    clearTimeout(timer);
    try {
      sock.close();
    } catch { /* closed by the timer */ }
  }
}

/** Waits until `at` (performance.now() ms) or until `stop()` says so, in steps of 200 ms. */
async function until(at: number, stop: () => boolean): Promise<boolean> {
  for (let i = 0; i < 1e6 && performance.now() < at; i++) {
    if (stop()) return false;
    await sleep(Math.min(200, at - performance.now()));
  }
  return !stop();
}

/** A2's life: killed at every FLAP_PERIOD_S mark of the load, started again DOWN_S later. */
async function flap(server: ZoneServer, end: number, done: () => boolean, events: string[]) {
  for (let cycle = 1; cycle < 10_000; cycle++) {
    const killAt = loadStart + cycle * FLAP_PERIOD_S * 1000;
    if (killAt >= end || !(await until(killAt, done))) return;
    await server.kill();
    events.push(`${t0().toFixed(1)} s: ${server.label} killed (SIGKILL)`);
    if (!(await until(Math.min(killAt + DOWN_S * 1000, end), done))) return;
    await server.start();
    events.push(`${t0().toFixed(1)} s: ${server.label} started (#${server.starts()})`);
  }
}

/** The pid of the running dnsperf (a descendant of this process), if any. */
function dnsperfPid(): number | undefined {
  return descendants(Deno.pid).find((pid) => {
    try {
      return Deno.readTextFileSync(`/proc/${pid}/comm`).trim() === "dnsperf";
    } catch {
      return false;
    }
  });
}

const cleanups: (() => Promise<unknown>)[] = [];
async function cleanUp() {
  for (const c of cleanups.splice(0).reverse()) {
    await c().catch((e) => log(`cleanup: ${(e as Error).message}`));
  }
  // Last resort, by pid: anything this process started that is still there (dnsperf …).
  for (const pid of descendants(Deno.pid)) {
    try {
      Deno.kill(pid, "SIGKILL");
      log(`killed leftover child ${pid}`);
    } catch { /* gone */ }
  }
}
const onSignal = () => cleanUp().finally(() => Deno.exit(130));
Deno.addSignalListener("SIGINT", onSignal);
Deno.addSignalListener("SIGTERM", onSignal);

const programs = { dnsperf: findProgram("dnsperf"), taskset: findProgram("taskset") };
for (const [name, path] of Object.entries(programs)) {
  if (!path) throw new Error(`${name} is missing (Debian: dnsperf, util-linux)`);
}
if (!findProgram("dnsmasq")) throw new Error("dnsmasq is missing (Debian: dnsmasq-base)");

const addr = {
  a1: loopbackAddress(),
  a2: loopbackAddress(),
  bSlow: loopbackAddress(),
  bReal: loopbackAddress(),
  listen: loopbackAddress(),
  metrics: loopbackAddress({ port: 9153 }),
  srcA: loopbackAddress({ port: 0 }),
  srcB: loopbackAddress({ port: 0 }),
};
const dir = await Deno.makeTempDir({ prefix: "pvdns-soak-" });
cleanups.push(() => Deno.remove(dir, { recursive: true }));

let exitCode = 1;
try {
  const zoneA = { zone: ZONE_A, foreignZone: ZONE_B, ipv4: "192.0.2.1", ipv6: "2001:db8::a" };
  const a1 = await startZoneServer({ label: "A1", address: addr.a1, ttl: TTL, ...zoneA });
  cleanups.push(() => a1.stop());
  const a2 = await startZoneServer({ label: "A2", address: addr.a2, ttl: TTL, ...zoneA });
  cleanups.push(() => a2.stop());
  const b = await startZoneServer({
    label: "B",
    address: addr.bReal,
    ttl: TTL,
    zone: ZONE_B,
    foreignZone: ZONE_A,
    ipv4: "198.51.100.1",
    ipv6: "2001:db8::b",
  });
  cleanups.push(() => b.stop());
  const slow: SlowUpstream = startSlowUpstream({ address: addr.bSlow, server: addr.bReal });
  cleanups.push(() => slow.stop());

  const config = {
    listen: [`${addr.listen}:53`],
    metrics: { listen: `${addr.metrics}:9153` },
    // dnsperf is one client address standing in for all of a host's applications: the default
    // per-client bound (256) would drop queries whenever A2 dies with ~200 queries waiting on it.
    limits: { maxInFlightPerClient: 4096 },
    pvds: [
      {
        id: "a.soak.test",
        sourceAddresses: [addr.srcA],
        servers: [addr.a1, addr.a2],
        dnsZones: [ZONE_A],
        default: false,
      },
      {
        id: "b.soak.test",
        sourceAddresses: [addr.srcB],
        servers: [addr.bSlow],
        dnsZones: [ZONE_B],
        default: true,
      },
    ],
  };
  const pvdns: PvdnsProcess = await startPvdns({ config });
  cleanups.push(() => pvdns.stop());
  let pvdnsDied: Deno.CommandStatus | undefined;
  pvdns.exited.then((s) => pvdnsDied ??= s);

  for (const zone of [ZONE_A, ZONE_B]) {
    const rcode = await probe(addr.listen, `probe.${zone}`);
    if (rcode !== 0) throw new Error(`setup: probe.${zone} through pvdns gave rcode ${rcode}`);
  }
  // What was measured: the working tree as pvdns loaded it (others may commit during the run).
  const git = async (...args: string[]) =>
    (await exec(["git", ...args], { cwd: REPO_ROOT })).stdout.trim();
  const tree = {
    commit: await git("rev-parse", "--short", "HEAD"),
    dirty: await git("status", "--short", "--untracked-files=no"),
  };
  const lines = Math.ceil(QPS * SECONDS * 1.05) + 1000;
  const file = await queryFile(dir, "questions", questions(lines));
  log(`${lines} questions written; pvdns pid ${pvdns.pid} on ${addr.listen}; ${SECONDS} s`);
  await sleep(1000);

  const metricsAt = () => scrapeMetrics(addr.metrics, 9153);
  const before: Sample[] = await metricsAt();
  const rss: RssSample[] = [];
  const sampleRss = () => ({
    t: Number(t0().toFixed(1)),
    rssKib: rssKib(pvdns.pid),
    load1: load1(),
  });
  const rssBeforeLoad: RssSample = { ...sampleRss(), ...heap(before) };
  const ticks = await clockTicks();
  const cpuBefore = cpuTicks(pvdns.pid);
  const pvdnsDropsBefore = udpDrops(pvdns.pid);
  let dnsperfDrops = 0; // its sockets go when it exits: the last reading while it ran
  loadStart = performance.now();
  const end = loadStart + SECONDS * 1000;
  let loadDone = false;
  const events: string[] = [];

  const load = dnsperf({
    dnsperf: programs.dnsperf!,
    taskset: programs.taskset!,
    core: DNSPERF_CORE,
    server: addr.listen,
    file,
    seconds: SECONDS,
    outstanding: 1000,
    qps: QPS,
    timeout: 5,
  }).finally(() => loadDone = true);
  const flapping = flap(a2, end, () => loadDone, events);
  let middle: Sample[] | undefined;
  let rssMiddle: RssSample | undefined;
  const sampling = (async () => {
    for (let i = 1; i < 1e5 && !loadDone; i++) {
      if (!(await until(loadStart + i * SAMPLE_EVERY_S * 1000, () => loadDone))) break;
      if (pvdnsDied) break;
      const sample: RssSample = sampleRss();
      rss.push(sample);
      const perfPid = dnsperfPid();
      if (perfPid) dnsperfDrops = Math.max(dnsperfDrops, udpDrops(perfPid));
      const atMiddle = !middle && t0() >= SECONDS / 2;
      if (i !== 1 && i % 6 !== 0 && !atMiddle) continue;
      let scraped: Sample[];
      try {
        scraped = await metricsAt();
      } catch (e) {
        log(`metrics scrape failed: ${(e as Error).message}`);
        continue;
      }
      Object.assign(sample, heap(scraped));
      if (atMiddle) [middle, rssMiddle] = [scraped, sample];
      log(
        `RSS ${sample.rssKib} KiB (V8 heap used ${sample.heapUsedKib} KiB, external ` +
          `${sample.externalKib} KiB), cache entries ${total(scraped, "pvdns_cache_entries")}, ` +
          `load ${sample.load1}${atMiddle ? " (middle)" : ""}`,
      );
    }
  })();
  let perf: DnsperfResult;
  try {
    perf = await load;
  } finally {
    loadDone = true;
    await Promise.all([flapping, sampling]);
  }
  const rssEnd: RssSample | undefined = pvdnsDied ? undefined : sampleRss();
  const cpuLoad = pvdnsDied ? undefined : ticksSince(cpuBefore, cpuTicks(pvdns.pid));
  const pvdnsDrops = udpDrops(pvdns.pid) - pvdnsDropsBefore;
  // The first sample under load: the fresh process has just grown its heaps and buffers.
  const rssStart = rss[0];
  const after: Sample[] = pvdnsDied ? [] : await metricsAt();
  if (rssEnd) Object.assign(rssEnd, heap(after));
  await sleep(5000);
  const rssIdle = pvdnsDied ? undefined : sampleRss();

  // Every server ends before its log is read, so that no line is missing.
  for (const s of [a1, a2, b]) await s.stop();
  const slowStats = slow.stats();
  await slow.stop();
  const scans: Record<string, LogScan> = {
    A1: await a1.scan(),
    A2: await a2.scan(),
    B: await b.scan(),
  };
  const died = pvdnsDied; // before stop(), whose exit is expected
  const pvdnsStatus = await pvdns.stop();

  const failures: string[] = [];
  for (const [label, s] of Object.entries(scans)) {
    if (s.foreign) failures.push(`${label}: ${s.foreign} queries for the other PvD's zone`);
    if (s.other) failures.push(`${label}: ${s.other} queries for names outside both zones`);
    if (s.own === 0) failures.push(`${label}: no query logged at all: the check would be empty`);
  }
  for (const label of ["A1", "A2"]) {
    const wrong = Object.keys(scans[label]!.sources).filter((a) => a !== addr.srcA);
    if (wrong.length) {
      failures.push(`${label}: queries from ${wrong} (PvD A's source: ${addr.srcA})`);
    }
  }
  const wrongB = Object.keys(slowStats.sources).filter((a) => a !== addr.srcB);
  if (wrongB.length) {
    failures.push(`B (slow): queries from ${wrongB} (PvD B's source: ${addr.srcB})`);
  }
  if (died) failures.push(`pvdns exited during the soak: ${JSON.stringify(died)}`);

  /** How much a counter grew during the load, summed by labels `by`. */
  const delta = (name: string, by: string[], where: Record<string, string> = {}) => {
    const a = sumBy(after, name, by, where), b0 = sumBy(before, name, by, where);
    return Object.fromEntries(Object.entries(a).map(([k, v]) => [k, v - (b0[k] ?? 0)]));
  };
  const result = {
    date: new Date().toISOString(),
    command: `deno run -A bench/soak.ts ${Deno.args.join(" ")}`.trim(),
    setup: { minutes: MINUTES, qps: QPS, flapPeriodS: FLAP_PERIOD_S, downS: DOWN_S, ttl: TTL },
    workingTree: { commit: tree.commit, changedFiles: tree.dirty.split("\n").filter(Boolean) },
    addresses: addr,
    machine: { cores: navigator.hardwareConcurrency, load1AtEnd: load1() },
    dnsperf: perf,
    servfail: {
      dnsperf: perf.rcodes.SERVFAIL ?? 0,
      pvdnsServfailByPvd: delta("pvdns_dns_responses_total", ["pvd"], { rcode: "SERVFAIL" }),
    },
    udpDrops: { pvdns: pvdnsDrops, dnsperfAtLastSample: dnsperfDrops },
    metrics: {
      requestsByProto: delta("pvdns_dns_requests_total", ["proto"]),
      responsesByPvd: delta("pvdns_dns_responses_total", ["pvd"]),
      responsesByPvdRcodeSource: delta("pvdns_dns_responses_total", ["pvd", "rcode", "source"]),
      upstreamErrors: delta("pvdns_upstream_errors_total", ["pvd", "server", "reason"]),
      upstreamQueries: delta("pvdns_upstream_request_duration_seconds_count", ["pvd", "server"]),
      cacheEntriesMiddle: sumBy(middle ?? [], "pvdns_cache_entries", ["pvd"]),
      cacheEntriesEnd: sumBy(after, "pvdns_cache_entries", ["pvd"]),
      leakBlocked: total(after, "pvdns_leak_blocked_total"),
      crossPvdFallback: total(after, "pvdns_cross_pvd_fallback_total"),
      limitReached: delta("pvdns_limit_reached_total", ["limit"]),
    },
    rss: {
      beforeLoad: rssBeforeLoad,
      start: rssStart,
      middle: rssMiddle,
      end: rssEnd,
      idle5sAfter: rssIdle,
      growthKib: rssEnd && rssStart ? rssEnd.rssKib - rssStart.rssKib : undefined,
      secondHalfGrowthKib: rssEnd && rssMiddle ? rssEnd.rssKib - rssMiddle.rssKib : undefined,
      samples: rss,
    },
    upstreamLogs: scans,
    a2QueriesByInstance: a2.queriesByInstance(),
    slowUpstream: slowStats,
    flapEvents: events,
    pvdnsCpu: cpuLoad && {
      seconds: cpuLoad.total / ticks,
      kernelSeconds: cpuLoad.sys / ticks,
      mainThreadSeconds: cpuLoad.main / ticks,
      usPerQuery: Math.round((cpuLoad.total / ticks) * 1e6 / Math.max(1, perf.completed)),
    },
    pvdnsExit: pvdnsStatus,
    pvdnsOutput: [...pvdns.output().slice(0, 20), "…", ...pvdns.output().slice(20).slice(-30)],
    failures,
  };
  await Deno.mkdir(new URL("./results/", import.meta.url), { recursive: true });
  const out = new URL(
    `./results/soak-${result.date.replace(/[:.]/g, "-")}.json`,
    import.meta.url,
  );
  await Deno.writeTextFile(out, JSON.stringify(result, null, 2));
  console.log(summary(result));
  console.log(`\nJSON: ${out.pathname}`);
  exitCode = failures.length ? 1 : 0;
} finally {
  await cleanUp();
}
Deno.exit(exitCode);

/**
 * The servers of the bench, each on its own loopback address, port 53, in the foreground, with a
 * config of its own in a temp directory (never a packaged one), pinned to one core with
 * `taskset`, and stopped (SIGTERM, then SIGKILL) by {@linkcode Daemon.stop}.
 *
 * - NSD serves the bench zone (the authority every other server forwards to; no caching).
 * - pvdns, dnsmasq, Unbound and the floor proxy forward to NSD and cache.
 *
 * @module
 */

import { sleep, terminate } from "../testkit/exec.ts";
import { pvdnsArgv, REPO_ROOT } from "../testkit/pvdns_process.ts";
import { descendants, track } from "./_system.ts";

/** A running server. */
export interface Daemon {
  readonly name: string;
  readonly pid: number;
  readonly address: string;
  /** The last lines it printed (stdout and stderr). */
  output(): string;
  /** SIGTERM, at most 3 s, then SIGKILL; removes its temp directory. Safe to call twice. */
  stop(): Promise<void>;
}

interface SpawnOptions {
  name: string;
  address: string;
  argv: string[];
  /** CPU core for `taskset -c`. */
  core: number;
  taskset: string;
  /** Ready when a line matches; otherwise when a TCP connect to ADDRESS:53 succeeds. */
  readyLine?: RegExp;
  readyTimeoutMs?: number;
  env?: Record<string, string>;
  cwd?: string;
  /** Removed on stop. */
  dir?: string;
}

/** Collects whole lines (the last 200) from `stream` until it ends. */
async function pump(stream: ReadableStream<Uint8Array>, sink: string[], wake: () => void) {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let rest = "";
  for (;;) {
    const { value, done } = await reader.read().catch(() => ({ value: "", done: true }));
    const parts = (rest + (value ?? "")).split("\n");
    rest = done ? "" : parts.pop()!;
    sink.push(...parts.filter(Boolean));
    if (sink.length > 200) sink.splice(0, sink.length - 200);
    wake();
    if (done) return;
  }
}

async function tcpUp(address: string): Promise<boolean> {
  try {
    (await Deno.connect({ hostname: address, port: 53 })).close();
    return true;
  } catch {
    return false;
  }
}

/** Starts `argv` under `taskset -c CORE` and waits (bounded) until it is ready. */
export async function spawnPinned(o: SpawnOptions): Promise<Daemon> {
  const child = new Deno.Command(o.taskset, {
    args: ["-c", String(o.core), ...o.argv],
    env: { NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1", ...o.env },
    cwd: o.cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  track(child);
  const lines: string[] = [];
  let wake = () => {};
  const pumps = Promise.all([
    pump(child.stdout, lines, () => wake()),
    pump(child.stderr, lines, () => wake()),
  ]);
  let exited = false;
  const status = child.status.finally(() => exited = true);
  let stopped = false;
  const daemon: Daemon = {
    name: o.name,
    pid: child.pid, // taskset execs the program: same pid
    address: o.address,
    output: () => lines.join("\n"),
    async stop() {
      if (stopped) return;
      stopped = true;
      const tree = descendants(child.pid); // NSD forks; they must not outlive it either
      try {
        await terminate(child, status);
      } finally {
        for (const pid of tree) {
          try {
            Deno.kill(pid, "SIGKILL");
          } catch { /* already gone */ }
        }
        // Output still buffered is read for a moment, not waited for without end.
        await Promise.race([pumps, sleep(1000)]);
        if (o.dir) await Deno.remove(o.dir, { recursive: true }).catch(() => {});
      }
    },
  };
  const deadline = Date.now() + (o.readyTimeoutMs ?? 20_000);
  try {
    for (;;) {
      if (exited) throw new Error(`${o.name} exited while starting`);
      if (o.readyLine ? lines.some((l) => o.readyLine!.test(l)) : await tcpUp(o.address)) break;
      if (Date.now() > deadline) throw new Error(`${o.name} not ready in time`);
      await Promise.race([sleep(50), new Promise<void>((r) => wake = r)]);
    }
  } catch (e) {
    await daemon.stop();
    throw new Error(
      `${(e as Error).message}\nargv: ${o.argv.join(" ")}\noutput:\n${daemon.output()}`,
    );
  }
  return daemon;
}

/** The names of the bench zone, and which of them have an AAAA record too. */
export interface ZonePlan {
  readonly origin: string;
  /** Names `n0 … n(total-1)` under `origin`, each with an A record. */
  readonly total: number;
  /** `n0 … n(dual-1)` also have an AAAA record. */
  readonly dual: number;
}

/** `nI.ORIGIN` (no trailing dot). */
export function nameAt(plan: ZonePlan, i: number): string {
  return `n${i}.${plan.origin}`;
}

/** The zone file text: SOA, NS (pointing at NSD's own loopback address), A and AAAA records. */
export function zoneText(plan: ZonePlan, nsAddress: string): string {
  const out = [
    `$ORIGIN ${plan.origin}.`,
    "$TTL 3600",
    `@ IN SOA ns hostmaster 1 3600 600 86400 3600`,
    "@ IN NS ns",
    `ns IN A ${nsAddress}`,
  ];
  for (let i = 0; i < plan.total; i++) {
    out.push(`n${i} IN A 10.${(i >> 16) & 0xff}.${(i >> 8) & 0xff}.${i & 0xff}`);
    if (i < plan.dual) {
      out.push(`n${i} IN AAAA 2001:db8::${(i >> 16).toString(16)}:${(i & 0xffff).toString(16)}`);
    }
  }
  return out.join("\n") + "\n";
}

/** Programs found by `ensureTools`. */
export interface Programs {
  nsd: string;
  dnsmasq: string;
  unbound: string;
  taskset: string;
}

/** NSD, authoritative for the zone, rate limiting off, one server process. */
export function startNsd(
  p: Programs,
  address: string,
  plan: ZonePlan,
  core: number,
): Promise<Daemon> {
  return startNsdZone(p, { address, origin: plan.origin, zone: zoneText(plan, address), core });
}

/** What {@linkcode startNsdZone} serves. */
export interface NsdZone {
  readonly address: string;
  /** The zone's origin, e.g. `perf.example.`. */
  readonly origin: string;
  /** The zone file's text. */
  readonly zone: string;
  readonly core: number;
  /** NSD's `tcp-count` (connections at once). @default NSD's own */
  readonly tcpCount?: number;
}

/** NSD serving one zone file of the caller's, rate limiting off, one server process. */
export async function startNsdZone(
  p: Pick<Programs, "nsd" | "taskset">,
  z: NsdZone,
): Promise<Daemon> {
  const { address } = z;
  const dir = await Deno.makeTempDir({ prefix: "pvdns-bench-nsd-" });
  await Deno.writeTextFile(`${dir}/zone`, z.zone);
  await Deno.writeTextFile(
    `${dir}/nsd.conf`,
    `server:
  ip-address: ${address}@53
  do-ip6: no
  server-count: 1
  username: ""
  chroot: ""
  database: ""
  zonesdir: "${dir}"
  zonelistfile: "${dir}/zone.list"
  xfrdfile: "${dir}/xfrd.state"
  xfrdir: "${dir}"
  pidfile: ""
  logfile: "${dir}/nsd.log"
  verbosity: 0
  rrl-ratelimit: 0
  rrl-whitelist-ratelimit: 0
${z.tcpCount === undefined ? "" : `  tcp-count: ${z.tcpCount}\n`}remote-control:
  control-enable: no
zone:
  name: ${z.origin}
  zonefile: "${dir}/zone"
`,
  );
  return spawnPinned({
    name: "nsd",
    address,
    argv: [p.nsd, "-d", "-c", `${dir}/nsd.conf`],
    core: z.core,
    taskset: p.taskset,
    dir,
    readyTimeoutMs: 30_000,
  });
}

/** dnsmasq forwarding to NSD only (no resolv.conf, no hosts), with a cache of `cacheSize`. */
export async function startDnsmasq(
  p: Programs,
  address: string,
  nsd: string,
  cacheSize: number,
  core: number,
): Promise<Daemon> {
  const dir = await Deno.makeTempDir({ prefix: "pvdns-bench-dnsmasq-" });
  return spawnPinned({
    name: "dnsmasq",
    address,
    argv: [
      p.dnsmasq,
      "--keep-in-foreground",
      "--conf-file=/dev/null",
      "--no-resolv",
      "--no-hosts",
      "--no-poll",
      "--bind-interfaces",
      `--listen-address=${address}`,
      "--port=53",
      "--user=root",
      "--group=root",
      "--pid-file=",
      `--server=${nsd}`,
      `--cache-size=${cacheSize}`,
      "--dns-forward-max=1000",
      `--log-facility=${dir}/dnsmasq.log`,
    ],
    core,
    taskset: p.taskset,
    dir,
  });
}

/** Unbound forwarding everything (".") to NSD, caches large, one thread, no validation. */
export function startUnbound(
  p: Programs,
  address: string,
  nsd: string,
  core: number,
): Promise<Daemon> {
  return startUnboundForwarder(p, { address, nsd, core, tuning: BENCH_UNBOUND_TUNING });
}

/** The cache and query settings of the main bench's Unbound (large, one slab each). */
const BENCH_UNBOUND_TUNING = `  msg-cache-size: 256m
  rrset-cache-size: 512m
  msg-cache-slabs: 1
  rrset-cache-slabs: 1
  infra-cache-slabs: 1
  key-cache-slabs: 1
  num-queries-per-thread: 4096
  prefetch: no
`;

/** What {@linkcode startUnboundForwarder} runs. */
export interface UnboundForwarder {
  readonly address: string;
  /** The NSD every name is forwarded to. */
  readonly nsd: string;
  readonly core: number;
  /** `server:` lines for caches and the like, each ending in a newline ("" for Unbound's defaults). */
  readonly tuning: string;
}

/** Unbound forwarding everything (".") to NSD, one thread, no validation, `tuning` as given. */
export async function startUnboundForwarder(
  p: Pick<Programs, "unbound" | "taskset">,
  u: UnboundForwarder,
): Promise<Daemon> {
  const { address, nsd, core } = u;
  const dir = await Deno.makeTempDir({ prefix: "pvdns-bench-unbound-" });
  await Deno.writeTextFile(
    `${dir}/unbound.conf`,
    `server:
  interface: ${address}
  port: 53
  do-ip6: no
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "${dir}"
  pidfile: "${dir}/unbound.pid"
  use-syslog: no
  logfile: ""
  verbosity: 0
  num-threads: 1
  module-config: "iterator"
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
${u.tuning}remote-control:
  control-enable: no
forward-zone:
  name: "."
  forward-addr: ${nsd}@53
`,
  );
  return spawnPinned({
    name: "unbound",
    address,
    argv: [p.unbound, "-d", "-c", `${dir}/unbound.conf`],
    core,
    taskset: p.taskset,
    dir,
  });
}

/** pvdns (`main.ts serve`) with one default PvD forwarding to NSD. */
export async function startPvdns(
  p: Programs,
  address: string,
  source: string,
  nsd: string,
  cacheSize: number,
  core: number,
): Promise<Daemon> {
  const dir = await Deno.makeTempDir({ prefix: "pvdns-bench-pvdns-" });
  const config = {
    listen: [`${address}:53`],
    pvds: [{ id: "bench.example", sourceAddresses: [source], servers: [nsd], default: true }],
    cache: { maxEntries: cacheSize },
  };
  await Deno.writeTextFile(`${dir}/pvdns.jsonc`, JSON.stringify(config, null, 2));
  return spawnPinned({
    name: "pvdns",
    address,
    argv: pvdnsArgv(["serve", "--config", `${dir}/pvdns.jsonc`]),
    cwd: REPO_ROOT,
    core,
    taskset: p.taskset,
    readyLine: /^pvdns: ready/,
    dir,
  });
}

/** The bare Deno proxy (bench/_floor_proxy.ts). */
export function startFloor(
  p: Programs,
  address: string,
  nsd: string,
  core: number,
): Promise<Daemon> {
  return spawnPinned({
    name: "floor",
    address,
    argv: [
      Deno.execPath(),
      "run",
      "--allow-net",
      "--unstable-net",
      new URL("./_floor_proxy.ts", import.meta.url).pathname,
      address,
      nsd,
    ],
    cwd: REPO_ROOT,
    core,
    taskset: p.taskset,
    readyLine: /^floor: ready/,
  });
}

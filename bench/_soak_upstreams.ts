/**
 * The dnsmasq upstreams of the soak (`bench/soak.ts`) and what their query logs say.
 *
 * Each server answers every name under its PvD's zone (`--address=/ZONE/IPv4` and `/IPv6`, so
 * there are endless distinct names) and REFUSES all else; it logs every query
 * (`--log-queries`, parsed by `parseQueryLog` of `testkit/dnsmasq.ts`). A server can be
 * killed with SIGKILL and started again on the same address (the flapping one): the log of each
 * instance is scanned before its temp directory goes, so nothing it saw is lost.
 *
 * A scan streams the log file (it holds hundreds of thousands of lines after ten minutes) and
 * keeps counts: queries for the server's own zone, for the other PvD's zone (a leak across
 * PvDs), for any other name, and by client address.
 *
 * @module
 */

import { type Dnsmasq, parseQueryLog, startDnsmasq } from "../testkit/dnsmasq.ts";
import { sleep } from "../testkit/exec.ts";
import { descendants } from "./_system.ts";

/** Counts from the query logs of one server (summed over its instances). */
export interface LogScan {
  /** Query lines (`query[TYPE] NAME from ADDR`). */
  queries: number;
  /** Names in the server's own zone. */
  own: number;
  /** Names in the other PvD's zone: each is a query that crossed PvDs. */
  foreign: number;
  /** `. NS`: pvdns's health probe of a server it marked down (its own PvD's, by design). */
  probes: number;
  /** Any other name. */
  other: number;
  /** Query lines by client address. */
  sources: Record<string, number>;
  /** The first few foreign and other lines, as evidence. */
  examples: string[];
}

/** An empty scan. */
export function emptyScan(): LogScan {
  return { queries: 0, own: 0, foreign: 0, probes: 0, other: 0, sources: {}, examples: [] };
}

/** `a` + `b`, field by field (examples: the first 10). */
export function addScans(a: LogScan, b: LogScan): LogScan {
  const sources = { ...a.sources };
  for (const [k, v] of Object.entries(b.sources)) sources[k] = (sources[k] ?? 0) + v;
  return {
    queries: a.queries + b.queries,
    own: a.own + b.own,
    foreign: a.foreign + b.foreign,
    probes: a.probes + b.probes,
    other: a.other + b.other,
    sources,
    examples: [...a.examples, ...b.examples].slice(0, 10),
  };
}

/** Is `name` (no trailing dot, any case) `zone` or under it? */
export function inZone(name: string, zone: string): boolean {
  const n = name.toLowerCase().replace(/\.$/, "");
  return n === zone || n.endsWith(`.${zone}`);
}

/** Counts the query lines of `text` (whole lines) into `scan`. */
export function scanText(text: string, ownZone: string, foreignZone: string, scan: LogScan): void {
  for (const q of parseQueryLog(text)) {
    scan.queries++;
    scan.sources[q.from] = (scan.sources[q.from] ?? 0) + 1;
    if (inZone(q.name, ownZone)) {
      scan.own++;
      continue;
    }
    if (q.name === "." && q.type === "NS") {
      scan.probes++;
      continue;
    }
    if (inZone(q.name, foreignZone)) scan.foreign++;
    else scan.other++;
    if (scan.examples.length < 10) scan.examples.push(q.line);
  }
}

/** Streams the log file at `path` in 1 MiB chunks through {@linkcode scanText}. */
export async function scanLogFile(
  path: string,
  ownZone: string,
  foreignZone: string,
): Promise<LogScan> {
  const scan = emptyScan();
  using file = await Deno.open(path);
  const decoder = new TextDecoder();
  const buf = new Uint8Array(1 << 20);
  let rest = "";
  // Bounded: 64 Gi at most (a live server's later lines are simply not counted yet).
  for (let chunks = 0; chunks < 1 << 16; chunks++) {
    const n = await file.read(buf);
    if (n === null) break;
    const text = rest + decoder.decode(buf.subarray(0, n), { stream: true });
    const cut = text.lastIndexOf("\n") + 1;
    scanText(text.slice(0, cut), ownZone, foreignZone, scan);
    rest = text.slice(cut);
  }
  scanText(rest + decoder.decode(), ownZone, foreignZone, scan);
  return scan;
}

/** Options of {@linkcode startZoneServer}. */
export interface ZoneServerOptions {
  /** Name in the report, e.g. `A1`. */
  label: string;
  address: string;
  /** The PvD's zone: every name under it is answered. */
  zone: string;
  /** The other PvD's zone: a query for it here is a leak. */
  foreignZone: string;
  /** Answer to every A and AAAA question. */
  ipv4: string;
  ipv6: string;
  /** TTL of the answers (dnsmasq's `local-ttl`). */
  ttl: number;
}

/** A dnsmasq for one PvD that can be killed and started again. */
export interface ZoneServer {
  readonly label: string;
  readonly address: string;
  /** True while an instance runs. */
  running(): boolean;
  /** Instances started so far. */
  starts(): number;
  /** SIGKILL the running instance (and its TCP children), scan its log, remove its files. */
  kill(): Promise<void>;
  /** Start a new instance on the same address (waits until it accepts TCP connections). */
  start(): Promise<void>;
  /** Query lines logged by each finished instance, in order. */
  queriesByInstance(): number[];
  /** Scan the running instance's log as it is now and add every finished instance's scan. */
  scan(): Promise<LogScan>;
  /** SIGTERM the running instance (after scanning it) and remove its files. Safe twice. */
  stop(): Promise<void>;
}

interface Instance {
  dnsmasq: Dnsmasq;
  pid: number;
  logPath: string;
}

/** The pid and log file of a freshly started dnsmasq, from its `started` line and its argv. */
async function identify(dnsmasq: Dnsmasq): Promise<Instance> {
  const m = /dnsmasq\[(\d+)\]: started/.exec(await dnsmasq.rawLog());
  if (!m) throw new Error(`dnsmasq on ${dnsmasq.address}: no "started" line in its log`);
  const pid = Number(m[1]);
  const argv = (await Deno.readTextFile(`/proc/${pid}/cmdline`)).split("\0");
  const conf = argv.find((a) => a.startsWith("--conf-file="))?.slice("--conf-file=".length);
  if (!conf) throw new Error(`dnsmasq pid ${pid}: no --conf-file in ${argv.join(" ")}`);
  const logLine = (await Deno.readTextFile(conf)).split("\n").find((l) =>
    l.startsWith("log-facility=")
  );
  if (!logLine) throw new Error(`dnsmasq pid ${pid}: no log-facility in ${conf}`);
  return { dnsmasq, pid, logPath: logLine.slice("log-facility=".length) };
}

/**
 * Sends `signal` to `pid` and its descendants (dnsmasq's TCP children, captured before they are
 * orphaned), then waits (at most 2 s) until it is a zombie or reaped: its log is complete and
 * its port 53 free.
 */
async function signalAndWait(pid: number, signal: Deno.Signal): Promise<void> {
  for (const p of [pid, ...descendants(pid)]) {
    try {
      Deno.kill(p, signal);
    } catch { /* already gone */ }
  }
  for (let i = 0; i < 100; i++) {
    try {
      const state = /^State:\s+(\S)/m.exec(await Deno.readTextFile(`/proc/${pid}/status`));
      if (state?.[1] === "Z") return;
    } catch {
      return; // reaped
    }
    await sleep(20);
  }
}

/** Starts the first instance of a zone server. */
export async function startZoneServer(o: ZoneServerOptions): Promise<ZoneServer> {
  let current: Instance | undefined;
  let finished = emptyScan();
  const byInstance: number[] = [];
  let starts = 0;

  const start = async () => {
    if (current) throw new Error(`${o.label}: already running`);
    const dnsmasq = await startDnsmasq({
      address: o.address,
      records: [],
      ttl: o.ttl,
      extraArgs: [`--address=/${o.zone}/${o.ipv4}`, `--address=/${o.zone}/${o.ipv6}`],
    });
    try {
      current = await identify(dnsmasq);
    } catch (e) {
      await dnsmasq.stop();
      throw e;
    }
    starts++;
  };

  /** Scans the current instance's log, then ends it with `end`. */
  const finish = async (end: (i: Instance) => Promise<void>) => {
    const instance = current;
    if (!instance) return;
    current = undefined;
    try {
      await end(instance);
      const scan = await scanLogFile(instance.logPath, o.zone, o.foreignZone);
      byInstance.push(scan.queries);
      finished = addScans(finished, scan);
    } finally {
      await instance.dnsmasq.stop(); // SIGTERM (ignored when dead), temp directory removed
    }
  };

  await start();
  return {
    label: o.label,
    address: o.address,
    running: () => current !== undefined,
    starts: () => starts,
    queriesByInstance: () => [...byInstance],
    start,
    kill: () => finish(({ pid }) => signalAndWait(pid, "SIGKILL")),
    async scan() {
      const live = current
        ? await scanLogFile(current.logPath, o.zone, o.foreignZone)
        : emptyScan();
      return addScans(finished, live);
    },
    // Ended before the scan, so that its last lines are in the log.
    stop: () => finish(({ pid }) => signalAndWait(pid, "SIGTERM")),
  };
}

/**
 * Real dnsmasq upstreams for tests: one process per call, on one address, with its own
 * records and a parsed query log.
 *
 * Two modes:
 *
 * - **Authoritative** (when `zones` is given, the normal case): dnsmasq's `--auth-zone` /
 *   `--auth-server` mode. Answers carry AA, and NXDOMAIN/NODATA carry the zone's SOA in the
 *   authority section (TTL and SOA minimum = `ttl`), so RFC 2308 negative caching can be tested.
 *   Names outside the zones are REFUSED. dnsmasq only answers authoritatively for queries that
 *   arrive on an address *assigned to an interface* — a bare 127.x.y.z that merely routes to
 *   `lo` is treated as a "local" query and gets NXDOMAIN without SOA. So this mode adds
 *   `ADDRESS/32` to `lo` (in `netns`, or the host's when none is given) unless it is already
 *   there, and removes it again in `stop()`. It never touches any other interface.
 * - **Plain** (no `zones`): the records are served with `--host-record`/`--txt-record`,
 *   everything else is REFUSED (no upstream servers), and negative answers have no SOA.
 *
 * Quirks worth knowing (dnsmasq 2.90, Debian 12):
 * - Answers never set RA (dig warns "recursion requested but not available"); TTL is always
 *   `ttl` — dnsmasq does not count it down for its own records.
 * - A config-file line is limited to 1024 bytes, so TXT records (which may be 3 KB and more)
 *   are passed on the command line instead, where dnsmasq takes every byte literally (no quotes,
 *   no escapes): TXT text must not contain `,` `"` or `\`. Each TXT string is at most 255
 *   bytes; longer text is split into several strings of one record.
 * - The query log says `auth[A] name from 127.x.y.z` (authoritative) or `query[A] name from …`
 *   (plain). TCP connections are served by forked children, whose lines carry another pid.
 * - Readiness is checked by a TCP connect (never a DNS query), so the log starts empty.
 *
 * @module
 */

import { exec, execOk, inNetns, sleep, terminate } from "./exec.ts";

/** One record dnsmasq serves. */
export interface DnsmasqRecord {
  /** Owner name, with or without trailing dot. */
  name: string;
  type: "A" | "AAAA" | "TXT";
  /**
   * Address for A/AAAA. For TXT: the text (split into 255-byte strings) or the list of strings.
   */
  value: string | string[];
}

/** Options of {@linkcode startDnsmasq}. */
export interface DnsmasqOptions {
  /** IP address to listen on (UDP and TCP). */
  address: string;
  /** @default 53 */
  port?: number;
  /** Records to serve. */
  records: DnsmasqRecord[];
  /** Zones served authoritatively (with SOA on negative answers). Empty or absent: plain mode. */
  zones?: string[];
  /** TTL of every record, and of the SOA (and its minimum field). @default 300 */
  ttl?: number;
  /** Write `--log-queries` lines to the log file. @default true */
  logQueries?: boolean;
  /** Run inside this network namespace. */
  netns?: string;
  /** More dnsmasq arguments, appended last. */
  extraArgs?: string[];
  /** How long to wait for the listener. @default 5000 */
  readyTimeoutMs?: number;
}

/** One parsed query-log line. */
export interface DnsmasqQuery {
  /** `auth` for the authoritative path, `query` for the plain one. */
  kind: "auth" | "query";
  /** Query type as dnsmasq prints it (`A`, `AAAA`, `TXT`, `type=65` …). */
  type: string;
  /** Query name as received (dnsmasq keeps the letter case), no trailing dot. */
  name: string;
  /** Client address the query came from. */
  from: string;
  /** The whole log line. */
  line: string;
}

/** A running dnsmasq. */
export interface Dnsmasq {
  readonly address: string;
  readonly port: number;
  /** The server as a pvdns config names it: `ADDR:PORT`, or `[V6ADDR]:PORT`. */
  readonly hostPort: string;
  /** Parsed query lines so far, oldest first (waits `settleMs` first so late lines land). */
  queryLog(options?: { settleMs?: number }): Promise<DnsmasqQuery[]>;
  /** The raw log file. */
  rawLog(): Promise<string>;
  /** Wait (bounded) until the log holds a query matching `pred`; returns it or throws. */
  waitForQuery(pred: (q: DnsmasqQuery) => boolean, timeoutMs?: number): Promise<DnsmasqQuery>;
  /** SIGTERM, wait for exit, remove the address added to `lo`, delete the temp dir. */
  stop(): Promise<void>;
}

const QUERY_LINE = /\b(query|auth)\[([^\]]+)\] (\S+) from (\S+)\s*$/;

/** Parse dnsmasq log text into query entries. */
export function parseQueryLog(text: string): DnsmasqQuery[] {
  const out: DnsmasqQuery[] = [];
  for (const line of text.split("\n")) {
    const m = QUERY_LINE.exec(line);
    if (m) {
      out.push({
        kind: m[1] as "auth" | "query",
        type: m[2]!,
        name: m[3]!,
        from: m[4]!,
        line,
      });
    }
  }
  return out;
}

/**
 * Check one TXT string for the command line. dnsmasq strips quotes and decodes escapes only in
 * config files; on the command line every byte is literal and `,` separates strings.
 */
function checkTxt(s: string): string {
  if (/[,"\\]/.test(s) || new TextEncoder().encode(s).length > 255) {
    throw new Error(`dnsmasq TXT string must be <= 255 bytes without , " or \\: ${s}`);
  }
  return s;
}

/** Split text into TXT character-strings of at most 255 bytes (ASCII assumed). */
export function splitTxt(text: string, size = 255): string[] {
  const parts: string[] = [];
  for (let i = 0; i < text.length; i += size) parts.push(text.slice(i, i + size));
  return parts.length ? parts : [""];
}

function stripDot(name: string): string {
  return name.endsWith(".") ? name.slice(0, -1) : name;
}

/** Is `address` assigned to `lo` (in `netns`)? */
async function loHas(address: string, netns?: string): Promise<boolean> {
  const out = await execOk(["ip", "-j", "addr", "show", "dev", "lo"], { netns });
  const ifaces = JSON.parse(out) as { addr_info?: { local?: string }[] }[];
  return ifaces.some((i) => (i.addr_info ?? []).some((a) => a.local === address));
}

async function tcpReachable(address: string, port: number, netns?: string): Promise<boolean> {
  if (netns === undefined) {
    try {
      const conn = await Deno.connect({ hostname: address, port });
      conn.close();
      return true;
    } catch {
      return false;
    }
  }
  // Deno cannot enter a namespace: let bash's /dev/tcp do the connect in there.
  const r = await exec(["bash", "-c", `exec 3<>/dev/tcp/${address}/${port}`], {
    netns,
    timeoutMs: 2000,
  });
  return r.code === 0;
}

/**
 * Start dnsmasq on `address:port` serving `records`, and wait until it accepts connections.
 *
 * @example
 * const home = await startDnsmasq({
 *   address: loopbackAddress(),
 *   zones: ["home.test"],
 *   records: [{ name: "www.home.test", type: "A", value: "10.0.0.1" }],
 * });
 * try { ... (await home.queryLog()).length ... } finally { await home.stop(); }
 */
export async function startDnsmasq(options: DnsmasqOptions): Promise<Dnsmasq> {
  const { address, netns } = options;
  const port = options.port ?? 53;
  const ttl = options.ttl ?? 300;
  const zones = (options.zones ?? []).map(stripDot);
  const v6 = address.includes(":");
  const dir = await Deno.makeTempDir({ prefix: "pvdns-dnsmasq-" });
  await Deno.chmod(dir, 0o755);
  const logFile = `${dir}/dnsmasq.log`;
  const confFile = `${dir}/dnsmasq.conf`;

  const conf = [
    "no-resolv",
    "no-hosts",
    "no-poll",
    "bind-interfaces",
    "keep-in-foreground",
    "user=root",
    "group=root",
    "pid-file=",
    `listen-address=${address}`,
    `port=${port}`,
    `log-facility=${logFile}`,
    `local-ttl=${ttl}`,
    `auth-ttl=${ttl}`,
  ];
  if (options.logQueries ?? true) conf.push("log-queries");
  if (zones.length) {
    conf.push(`auth-server=ns.${zones[0]},${address}`);
    for (const z of zones) conf.push(`auth-zone=${z}`);
    conf.push(`auth-soa=1,hostmaster.${zones[0]},3600,600,86400,${ttl}`);
  }
  const args: string[] = [];
  for (const r of options.records) {
    const name = stripDot(r.name);
    if (r.type === "TXT") {
      const strings = Array.isArray(r.value) ? r.value : splitTxt(r.value);
      args.push(`--txt-record=${name},${strings.map(checkTxt).join(",")}`);
    } else {
      const value = Array.isArray(r.value) ? r.value : [r.value];
      for (const v of value) conf.push(`host-record=${name},${v},${ttl}`);
    }
  }
  await Deno.writeTextFile(confFile, conf.join("\n") + "\n");
  await Deno.writeTextFile(logFile, "");

  let addedLo = false;
  if (zones.length && !(await loHas(address, netns))) {
    await execOk(["ip", "addr", "add", `${address}/${v6 ? 128 : 32}`, "dev", "lo"], { netns });
    addedLo = true;
  }
  const removeLo = async () => {
    if (addedLo) {
      addedLo = false;
      await exec(["ip", "addr", "del", `${address}/${v6 ? 128 : 32}`, "dev", "lo"], { netns });
    }
  };

  const argv = inNetns(netns, [
    "dnsmasq",
    `--conf-file=${confFile}`,
    ...args,
    ...(options.extraArgs ?? []),
  ]);
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(argv[0]!, {
      args: argv.slice(1),
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (e) {
    await removeLo();
    throw e;
  }
  const outputPromise = child.output();
  let exited = false;
  outputPromise.then(() => exited = true, () => exited = true);

  const stopChild = () => terminate(child, outputPromise);

  const deadline = Date.now() + (options.readyTimeoutMs ?? 5000);
  let ready = false;
  while (Date.now() < deadline && !exited) {
    if (await tcpReachable(address, port, netns)) {
      ready = true;
      break;
    }
    await sleep(50);
  }
  if (!ready) {
    const out = await stopChild();
    await removeLo();
    const d = new TextDecoder();
    const log = await Deno.readTextFile(logFile).catch(() => "");
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw new Error(
      `dnsmasq on ${address}:${port} did not come up (exit ${out.code})\n` +
        `stderr: ${d.decode(out.stderr)}\nlog: ${log}\nargv: ${argv.join(" ")}`,
    );
  }

  const rawLog = () => Deno.readTextFile(logFile);
  const queryLog = async (o: { settleMs?: number } = {}) => {
    const settle = o.settleMs ?? 100;
    if (settle > 0) await sleep(settle);
    return parseQueryLog(await rawLog());
  };
  let stopped = false;
  return {
    address,
    port,
    hostPort: v6 ? `[${address}]:${port}` : `${address}:${port}`,
    rawLog,
    queryLog,
    async waitForQuery(pred, timeoutMs = 3000) {
      const end = Date.now() + timeoutMs;
      for (;;) {
        const hit = parseQueryLog(await rawLog()).find(pred);
        if (hit) return hit;
        if (Date.now() > end) {
          throw new Error(`dnsmasq ${address}: no matching query in log:\n${await rawLog()}`);
        }
        await sleep(50);
      }
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await stopChild();
      await removeLo();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

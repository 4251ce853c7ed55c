/**
 * A real Unbound (Debian's, 1.17 with nghttp2) for tests: one process on one loopback address,
 * serving Do53 (UDP and TCP), DoT and DoH (HTTP/2 only: Unbound's DoH speaks nothing else) from
 * `local-data`, with a query log that names each query's client address.
 *
 * Unbound never recurses here: `local-zone: "." refuse` answers every name outside the test's
 * zones with REFUSED, unless `forwardTo` sends them to another server of the test (a dnsmasq on
 * loopback). So nothing leaves the machine.
 *
 * Quirks (1.17): the query log line is `info: CLIENT NAME. TYPE CLASS`, written for every wire;
 * DoH answers only POST/GET on `http-endpoint` (`/dns-query`), anything else is 404; a `redirect`
 * local zone answers every name below it with the zone's own data (used by the bench).
 *
 * @module
 */

import { sleep, terminate } from "./exec.ts";

/** One record served from `local-data`. */
export interface UnboundRecord {
  /** Owner name (no trailing dot needed). */
  readonly name: string;
  readonly type: "A" | "AAAA" | "TXT";
  readonly value: string;
  /** @default 300 */
  readonly ttl?: number;
}

/** Options of {@linkcode startUnbound}. */
export interface UnboundOptions {
  /** IPv4 or IPv6 address to listen on. */
  readonly address: string;
  /** Certificate and key (PEM files) for DoT and DoH; without them, Do53 only. */
  readonly tls?: { readonly certFile: string; readonly keyFile: string };
  /** Records to serve; their zones are made `static` local zones. */
  readonly records?: readonly UnboundRecord[];
  /** Zones to serve as `redirect` (every name below answers with the zone's own records). */
  readonly redirectZones?: readonly string[];
  /** Forward every other name to this server (`ADDR` or `ADDR@PORT`) instead of refusing it. */
  readonly forwardTo?: string;
  /** Log every query (the query log). @default true */
  readonly logQueries?: boolean;
  /** @default { dns: 53, tls: 853, https: 443 } */
  readonly ports?: { readonly dns?: number; readonly tls?: number; readonly https?: number };
  /** How long to wait for every port to accept connections. @default 10000 */
  readonly readyTimeoutMs?: number;
}

/** One query-log line. */
export interface UnboundQuery {
  /** Client address the query came from. */
  readonly from: string;
  /** Query name, with trailing dot. */
  readonly name: string;
  readonly type: string;
  readonly line: string;
}

/** A running Unbound. */
export interface Unbound {
  readonly address: string;
  readonly ports: { readonly dns: number; readonly tls: number; readonly https: number };
  /** Parsed query-log lines so far, oldest first. */
  queryLog(): Promise<UnboundQuery[]>;
  /** The raw log. */
  rawLog(): Promise<string>;
  /** Waits (bounded) until the log holds a query matching `pred`; returns it or throws. */
  waitForQuery(pred: (q: UnboundQuery) => boolean, timeoutMs?: number): Promise<UnboundQuery>;
  /** SIGTERM, wait, remove the temp dir. */
  stop(): Promise<void>;
}

const QUERY_LINE = /\binfo: (\S+) (\S+\.) (\S+) (IN|CH|HS|ANY|CLASS\d+)\s*$/;

/** Parses Unbound log text into query entries. */
export function parseUnboundLog(text: string): UnboundQuery[] {
  const out: UnboundQuery[] = [];
  for (const line of text.split("\n")) {
    const m = QUERY_LINE.exec(line);
    if (m) out.push({ from: m[1]!, name: m[2]!, type: m[3]!, line });
  }
  return out;
}

function zoneOf(name: string): string {
  const labels = name.replace(/\.$/, "").split(".");
  return labels.slice(-2).join(".");
}

async function accepts(address: string, port: number): Promise<boolean> {
  try {
    const conn = await Deno.connect({ hostname: address, port });
    conn.close();
    return true;
  } catch {
    return false;
  }
}

/**
 * Starts Unbound on `options.address` and waits until each of its ports accepts connections.
 *
 * @example
 * const u = await startUnbound({
 *   address: loopbackAddress(),
 *   tls: pki.good,
 *   records: [{ name: "a.test.example", type: "A", value: "192.0.2.1" }],
 * });
 * try { ... } finally { await u.stop(); }
 */
export async function startUnbound(options: UnboundOptions): Promise<Unbound> {
  const { address } = options;
  const ports = {
    dns: options.ports?.dns ?? 53,
    tls: options.ports?.tls ?? 853,
    https: options.ports?.https ?? 443,
  };
  const dir = await Deno.makeTempDir({ prefix: "pvdns-unbound-" });
  await Deno.chmod(dir, 0o755);
  const logFile = `${dir}/unbound.log`;
  const v6 = address.includes(":");
  const conf = [
    "server:",
    '  username: ""',
    '  chroot: ""',
    `  directory: "${dir}"`,
    '  pidfile: ""',
    "  use-syslog: no",
    `  logfile: "${logFile}"`,
    "  verbosity: 1",
    `  log-queries: ${options.logQueries === false ? "no" : "yes"}`,
    "  do-daemonize: no",
    "  num-threads: 1",
    "  do-ip6: " + (v6 ? "yes" : "no"),
    `  interface: ${address}@${ports.dns}`,
    `  access-control: ${v6 ? "::/0" : "0.0.0.0/0"} allow`,
    "  do-not-query-localhost: no",
    '  module-config: "iterator"',
    "  incoming-num-tcp: 64",
  ];
  if (options.tls) {
    conf.push(
      `  interface: ${address}@${ports.tls}`,
      `  interface: ${address}@${ports.https}`,
      `  tls-port: ${ports.tls}`,
      `  https-port: ${ports.https}`,
      '  http-endpoint: "/dns-query"',
      `  tls-service-key: "${options.tls.keyFile}"`,
      `  tls-service-pem: "${options.tls.certFile}"`,
    );
  }
  if (!options.forwardTo) conf.push('  local-zone: "." refuse');
  const zones = new Set((options.records ?? []).map((r) => zoneOf(r.name)));
  for (const z of options.redirectZones ?? []) conf.push(`  local-zone: "${z}." redirect`);
  for (const z of zones) {
    if (!(options.redirectZones ?? []).includes(z)) conf.push(`  local-zone: "${z}." static`);
  }
  for (const r of options.records ?? []) {
    const rr = `${r.name.replace(/\.$/, "")}. ${r.ttl ?? 300} IN ${r.type}`;
    // A TXT value is quoted inside the line, which is then quoted with single quotes.
    conf.push(
      r.type === "TXT" ? `  local-data: '${rr} "${r.value}"'` : `  local-data: "${rr} ${r.value}"`,
    );
  }
  if (options.forwardTo) {
    conf.push("forward-zone:", '  name: "."', `  forward-addr: ${options.forwardTo}`);
  }
  await Deno.writeTextFile(`${dir}/unbound.conf`, conf.join("\n") + "\n");
  await Deno.writeTextFile(logFile, "");

  const child = new Deno.Command("unbound", {
    args: ["-d", "-c", `${dir}/unbound.conf`],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const output = child.output();
  let exited = false;
  output.then(() => exited = true, () => exited = true);
  const stopChild = () => terminate(child, output);

  const wanted = options.tls ? [ports.dns, ports.tls, ports.https] : [ports.dns];
  const deadline = Date.now() + (options.readyTimeoutMs ?? 10_000);
  let ready = false;
  while (!exited && Date.now() < deadline) {
    const up = await Promise.all(wanted.map((p) => accepts(address, p)));
    if (up.every(Boolean)) {
      ready = true;
      break;
    }
    await sleep(50);
  }
  const rawLog = () => Deno.readTextFile(logFile);
  if (!ready) {
    const out = await stopChild();
    const log = await rawLog().catch(() => "");
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw new Error(
      `unbound on ${address} did not come up (exit ${out.code})\n` +
        `stderr: ${new TextDecoder().decode(out.stderr)}\nlog: ${log}`,
    );
  }
  let stopped = false;
  return {
    address,
    ports,
    rawLog,
    queryLog: async () => parseUnboundLog(await rawLog()),
    async waitForQuery(pred, timeoutMs = 3000) {
      const end = Date.now() + timeoutMs;
      for (;;) {
        const hit = parseUnboundLog(await rawLog()).find(pred);
        if (hit) return hit;
        if (Date.now() > end) {
          throw new Error(`unbound ${address}: no matching query:\n${await rawLog()}`);
        }
        await sleep(50);
      }
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await stopChild();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

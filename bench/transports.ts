/**
 * Added latency of a cache miss through pvdns, per upstream wire (udp, tcp, tls, https): the
 * median round trip of a query sent to pvdns (UDP, one client query at a time, every name new so
 * every query is a miss) minus the median round trip of the same kind of query sent straight to
 * the upstream over that wire by the same client code pvdns uses (`transports/`, connections
 * kept warm, as pvdns keeps them).
 *
 * The upstream is one Unbound on loopback serving Do53, DoT and DoH (HTTP/2) from a `redirect`
 * local zone, so any name under `bench.test.` is answered at once, with no recursion, and
 * nothing leaves the machine. A test CA made with openssl signs its certificate. pvdns runs as
 * its own process (`main.ts serve`), with one PvD per wire, each bound to its own listener.
 * Direct and through-pvdns queries alternate, so drift hits both the same.
 *
 * Run (as root: it binds port 53 on loopback addresses):
 *
 * ```sh
 * deno run --allow-all bench/transports.ts [QUERIES_PER_WIRE]   # default 500
 * ```
 *
 * Prints a markdown table and writes JSON to `bench/results/transports-DATE.json`.
 *
 * @module
 */

import { LeakGuard } from "../src/policy/leak_guard.ts";
import { parseServer } from "../src/config/schema.ts";
import type { ServerConfig, ServerProtocol } from "../src/config/types.ts";
import { buildUpstreamQuery } from "../src/dns/query.ts";
import { createTransport } from "../src/transports/create.ts";
import { loopbackAddress } from "../testkit/loopback.ts";
import { startPvdns } from "../testkit/pvdns_process.ts";
import { makeTestPki } from "../testkit/test_pki.ts";
import { startUnbound } from "../testkit/unbound.ts";
import { buildQuery } from "../testkit/wire.ts";

const QUERIES = Number(Deno.args[0] ?? 500);
const WARMUP = 50;
const WIRES: readonly ServerProtocol[] = ["udp", "tcp", "tls", "https"];
const AUTH = "dns.bench.example";

if (!(QUERIES >= 10 && QUERIES <= 100_000)) throw new RangeError(`bad query count ${QUERIES}`);

function serverText(protocol: ServerProtocol, address: string): string {
  return {
    udp: address,
    tcp: `tcp://${address}`,
    tls: `tls://${address}#${AUTH}`,
    https: `https://${address}/dns-query#${AUTH}`,
  }[protocol];
}

function stats(us: number[]) {
  const s = [...us].sort((a, b) => a - b);
  const at = (p: number) => Math.round(s[Math.min(s.length - 1, Math.floor(p * s.length))]!);
  return { n: s.length, p50: at(0.5), p90: at(0.9), p99: at(0.99) };
}

/** One query to pvdns over UDP; resolves with the round trip in µs. */
async function viaPvdns(sock: Deno.DatagramConn, listen: string, id: number, name: string) {
  const q = buildQuery(id, name);
  const t0 = performance.now();
  await sock.send(q, { hostname: listen, port: 53, transport: "udp" });
  const timer = setTimeout(() => sock.close(), 5000); // a lost reply ends the run, not hangs it
  try {
    for (;;) {
      const [reply] = await sock.receive();
      if (reply[0] === q[0] && reply[1] === q[1]) {
        if ((reply[3]! & 0x0f) !== 0) throw new Error(`pvdns answered rcode ${reply[3]! & 0x0f}`);
        return (performance.now() - t0) * 1000;
      }
    }
  } finally {
    clearTimeout(timer);
  }
}

const pki = await makeTestPki(AUTH);
const upstream = loopbackAddress();
const unbound = await startUnbound({
  address: upstream,
  tls: pki.good,
  logQueries: false,
  redirectZones: ["bench.test"],
  records: [{ name: "bench.test", type: "A", value: "192.0.2.53" }],
});
const directSource = loopbackAddress({ port: 0 });
const clientAddress = loopbackAddress({ port: 0 });
const lanes = WIRES.map((protocol) => ({
  protocol,
  listen: loopbackAddress(),
  source: loopbackAddress({ port: 0 }),
  server: parseServer(serverText(protocol, upstream)) as ServerConfig,
}));
const pvdns = await startPvdns({
  config: {
    listen: lanes.map((l) => ({ address: `${l.listen}:53`, pvd: `${l.protocol}.bench.example` })),
    pvds: lanes.map((l, i) => ({
      id: `${l.protocol}.bench.example`,
      sourceAddresses: [l.source],
      servers: [l.server.text],
      caFile: pki.caFile,
      dnsZones: ["bench.test"],
      default: i === 0,
    })),
    upstream: { timeoutMs: 2000, deadlineMs: 4000 },
  },
});
const guard = new LeakGuard([{
  id: "direct",
  sourceAddresses: [directSource],
  servers: lanes.map((l) => l.server),
}]);
const sock = Deno.listenDatagram({ hostname: clientAddress, port: 0, transport: "udp" });
const rows: Record<string, unknown>[] = [];
try {
  for (const lane of lanes) {
    const direct = createTransport({
      pvd: "direct",
      server: lane.server,
      source: directSource,
      guard,
      ca: [pki.caPem],
    });
    const d: number[] = [], p: number[] = [];
    try {
      for (let i = -WARMUP; i < QUERIES; i++) {
        const id = (i + WARMUP) & 0xffff;
        const name = `${lane.protocol}-${i + WARMUP}`;
        const q = buildUpstreamQuery({
          id,
          qname: `d-${name}.bench.test.`,
          qtype: 1,
          qclass: 1,
          do: false,
          cd: false,
        });
        const t0 = performance.now();
        await direct.exchange(q, { signal: AbortSignal.timeout(5000) });
        const direct_us = (performance.now() - t0) * 1000;
        const via_us = await viaPvdns(sock, lane.listen, id, `p-${name}.bench.test`);
        if (i >= 0) {
          d.push(direct_us);
          p.push(via_us);
        }
      }
    } finally {
      await direct.close();
    }
    const ds = stats(d), ps = stats(p);
    rows.push({
      transport: lane.protocol,
      queries: QUERIES,
      direct: ds,
      viaPvdns: ps,
      addedP50: ps.p50 - ds.p50,
    });
  }
  console.log(
    `cache misses, ${QUERIES} per wire, one at a time; Unbound ${upstream} on loopback; µs\n`,
  );
  console.log(
    "| upstream wire | direct p50 | via pvdns p50 | added p50 | direct p90 | via pvdns p90 |",
  );
  console.log("|---|---:|---:|---:|---:|---:|");
  for (
    const r of rows as { transport: string; direct: Stats; viaPvdns: Stats; addedP50: number }[]
  ) {
    console.log(
      `| ${r.transport} | ${r.direct.p50} | ${r.viaPvdns.p50} | ${r.addedP50} | ${r.direct.p90} | ${r.viaPvdns.p90} |`,
    );
  }
  await Deno.mkdir(new URL("./results/", import.meta.url), { recursive: true });
  const file = new URL(
    `./results/transports-${new Date().toISOString().replace(/[:.]/g, "-")}.json`,
    import.meta.url,
  );
  await Deno.writeTextFile(
    file,
    JSON.stringify({ date: new Date().toISOString(), deno: Deno.version.deno, rows }, null, 2) +
      "\n",
  );
  console.log(`\nwritten: ${file.pathname}`);
} finally {
  try {
    sock.close();
  } catch { /* closed by a lost reply */ }
  await pvdns.stop();
  await unbound.stop();
  await pki.remove();
}

type Stats = ReturnType<typeof stats>;

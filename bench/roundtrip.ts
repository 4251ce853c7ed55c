/**
 * Round-trip time of one query through pvdns, cache hit and cache miss, beside the same queries
 * sent straight to the upstream: a dnsmasq on loopback serving a zone authoritatively. One client
 * query at a time (no load), measured with `performance.now()` around send/receive on a UDP
 * socket. Prints a markdown table and writes JSON to `bench/results/`.
 *
 * Run: `deno task bench` (as root: it binds port 53 on loopback addresses).
 *
 * @module
 */

import { startDnsmasq } from "../testkit/dnsmasq.ts";
import { loopbackAddress } from "../testkit/loopback.ts";
import { startPvdns } from "../testkit/pvdns_process.ts";
import { buildQuery } from "../testkit/wire.ts";

const HITS = 2000;
const MISSES = 500;

async function timeQueries(server: string, names: string[]): Promise<number[]> {
  const sock = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  const out: number[] = [];
  try {
    for (let i = 0; i < names.length; i++) {
      const q = buildQuery(i & 0xffff, names[i]!);
      const t0 = performance.now();
      await sock.send(q, { hostname: server, port: 53, transport: "udp" });
      const timeout = setTimeout(() => sock.close(), 2000);
      const [reply] = await sock.receive();
      clearTimeout(timeout);
      out.push((performance.now() - t0) * 1000);
      if (reply[0] !== q[0] || reply[1] !== q[1]) throw new Error("mismatched reply");
    }
  } finally {
    try {
      sock.close();
    } catch { /* closed */ }
  }
  return out;
}

function stats(us: number[]) {
  const s = [...us].sort((a, b) => a - b);
  const at = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))]!;
  return {
    n: s.length,
    p50: Math.round(at(0.5)),
    p90: Math.round(at(0.9)),
    p99: Math.round(at(0.99)),
  };
}

const upstream = loopbackAddress();
const listen = loopbackAddress();
const source = loopbackAddress({ port: 0 });
const records = [
  { name: "hit.bench.test", type: "A" as const, value: "198.51.100.1" },
  ...Array.from({ length: MISSES * 2 }, (_, i) => ({
    name: `m${i}.bench.test`,
    type: "A" as const,
    value: `198.51.${100 + (i >> 8)}.${i & 0xff}`,
  })),
];
const dns = await startDnsmasq({
  address: upstream,
  zones: ["bench.test"],
  records,
  logQueries: false,
});
// `deno run -A bench/roundtrip.ts deno` compares the Deno.listenDatagram listener.
const udpListener = Deno.args[0] ?? "auto";
const pvdns = await startPvdns({
  args: ["--udp-listener", udpListener],
  config: {
    listen: [`${listen}:53`],
    pvds: [{ id: "bench.example", sourceAddresses: [source], servers: [upstream], default: true }],
  },
});
try {
  const hitNames = Array.from({ length: HITS }, () => "hit.bench.test");
  await timeQueries(listen, hitNames.slice(0, 200)); // warm up: JIT and cache
  const rows = {
    "upstream direct (dnsmasq)": stats(await timeQueries(upstream, hitNames)),
    "pvdns cache hit": stats(await timeQueries(listen, hitNames)),
    "upstream direct, distinct names": stats(
      await timeQueries(upstream, Array.from({ length: MISSES }, (_, i) => `m${i}.bench.test`)),
    ),
    "pvdns cache miss (distinct names)": stats(
      await timeQueries(
        listen,
        Array.from({ length: MISSES }, (_, i) => `m${MISSES + i}.bench.test`),
      ),
    ),
  };
  console.log("| path | queries | p50 µs | p90 µs | p99 µs |\n|---|---|---|---|---|");
  for (const [name, s] of Object.entries(rows)) {
    console.log(`| ${name} | ${s.n} | ${s.p50} | ${s.p90} | ${s.p99} |`);
  }
  const missAdded = rows["pvdns cache miss (distinct names)"].p50 -
    rows["upstream direct, distinct names"].p50;
  console.log(`\nmedian added by pvdns on a miss: ${missAdded} µs`);
  await Deno.mkdir(new URL("./results/", import.meta.url), { recursive: true });
  const file = new URL(
    `./results/roundtrip-${new Date().toISOString().replace(/[:.]/g, "-")}.json`,
    import.meta.url,
  );
  await Deno.writeTextFile(
    file,
    JSON.stringify({ date: new Date().toISOString(), rows, missAdded }, null, 2),
  );
} finally {
  await pvdns.stop();
  await dns.stop();
}

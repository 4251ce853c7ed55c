/**
 * Source-port randomness of pvdns's upstream UDP queries (RFC 5452 §9.2), measured on what the
 * upstream receives: pvdns runs as `deno task start` runs it (the start task's permissions: no
 * FFI, so its sockets are not connected), one PvD whose server is a UDP socket of this script
 * that answers every query and records the source port it came from. 2,000 cache misses are
 * sent at a fixed rate (default 1,000 queries/s, 20 at most outstanding).
 *
 * Figures: distinct ports among the queries; in windows of 26 consecutive queries (the size of
 * DNS-OARC's porttest), the share whose ports' standard deviation is 0 (porttest's POOR) and the
 * median standard deviation (porttest calls ≥ 3,980 GREAT).
 *
 * ```sh
 * deno run --allow-all bench/upstream_ports.ts [--queries 2000] [--rate 1000]
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { loopbackAddress } from "../testkit/loopback.ts";
import { startPvdns } from "../testkit/pvdns_process.ts";
import { buildQuery } from "../testkit/wire.ts";

const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    queries: { type: "string", default: "2000" },
    rate: { type: "string", default: "1000" },
  },
});
const QUERIES = Math.min(20_000, Number(args.queries));
const RATE = Math.min(10_000, Number(args.rate));
const WINDOW = 26;

const upstreamAddress = loopbackAddress();
const upstream = Deno.listenDatagram({ hostname: upstreamAddress, port: 53, transport: "udp" });
const ports: number[] = [];
const serving = (async () => {
  try {
    for (;;) {
      const [data, from] = await upstream.receive();
      ports.push((from as Deno.NetAddr).port);
      const answer = data.slice();
      answer[2] = 0x81; // QR, RD
      answer[3] = 0x80; // RA, NOERROR, no records: a NODATA is an answer all the same
      await upstream.send(answer, from);
    }
  } catch { /* closed */ }
})();

const listen = loopbackAddress();
const pvdns = await startPvdns({
  config: {
    listen: [`${listen}:53`],
    pvds: [{
      id: "bench.example",
      sourceAddresses: [loopbackAddress({ port: 0 })],
      servers: [upstreamAddress],
    }],
  },
});
const client = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
let answered = 0;
const receiving = (async () => {
  try {
    while (answered < QUERIES) {
      await client.receive();
      answered++;
    }
  } catch { /* closed */ }
})();
const started = performance.now();
try {
  for (let i = 0; i < QUERIES; i++) {
    // Paced: query i leaves at i / RATE seconds, with at most 20 outstanding.
    const due = started + (i * 1000) / RATE;
    while (performance.now() < due || i - answered >= 20) {
      await new Promise((r) => setTimeout(r, 1));
      if (performance.now() - started > 120_000) throw new Error("no progress in 120 s");
    }
    await client.send(buildQuery(i & 0xffff, `q${i}.ports.bench.`), {
      transport: "udp",
      hostname: listen,
      port: 53,
    });
  }
  const deadline = performance.now() + 10_000;
  while (answered < QUERIES && performance.now() < deadline) {
    await new Promise((r) => setTimeout(r, 10));
  }
} finally {
  client.close();
  await receiving;
  await pvdns.stop();
  upstream.close();
  await serving;
}

const stddev = (xs: readonly number[]) => {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  return Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / xs.length);
};
const windows: number[] = [];
for (let i = 0; i + WINDOW <= ports.length; i++) windows.push(stddev(ports.slice(i, i + WINDOW)));
const sorted = [...windows].sort((a, b) => a - b);
const result = {
  queries: QUERIES,
  rate: RATE,
  answered,
  upstreamQueries: ports.length,
  distinctPorts: new Set(ports).size,
  distinctShare: new Set(ports).size / Math.max(1, ports.length),
  windows: windows.length,
  poorWindows: windows.filter((s) => s === 0).length,
  medianWindowStddev: Math.round(sorted[Math.floor(sorted.length / 2)] ?? 0),
};
console.log(JSON.stringify(result, null, 2));
console.log(
  `${result.distinctPorts} distinct source ports for ${result.upstreamQueries} upstream queries ` +
    `(${(100 * result.distinctShare).toFixed(1)} %); windows of ${WINDOW} with stddev 0: ` +
    `${result.poorWindows} of ${result.windows}; median window stddev ${result.medianWindowStddev}`,
);

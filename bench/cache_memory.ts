/**
 * Memory held per cached answer, measured in-process after forced garbage collections: N answers
 * (wire form with an OPT record, as upstreams send them) indexed and stored in one PvD's cache,
 * and what the cache charges them ({@linkcode PvdCache.bytes}) beside what they cost. Complements
 * `bench/run.ts`, whose RSS figure is read from a live daemon right after 100,000 misses and so
 * also counts garbage not yet collected.
 *
 * Run with the start task's V8 flags (without them V8's larger young generation leaves more of the
 * run's garbage resident, and the RSS figures mean less):
 * `deno run -A --v8-flags=--expose-gc,--max-semi-space-size=2,--no-allocation-site-pretenuring,`
 * `--heap-growing-percent=50 bench/cache_memory.ts [--bytes N] [--entries N]` (`--bytes`: answers
 * of about N wire bytes, a TXT set; default one A record; `--entries`: default 100,000, 5,000 for
 * answers over 8 KiB). Besides the figures over all entries it prints those of the second half
 * alone: what one more entry costs, without the fixed costs (the LRU's arrays, code, the first
 * chunks) and the high-water of the run's own garbage, which a forced GC frees but malloc keeps
 * resident. The fixed per-entry charge (`ENTRY_OVERHEAD_BYTES` in src/cache/cache.ts) is what one
 * more entry of the default run (one A record) holds, V8 heap and external memory (which its RSS
 * matches), less its slot and its key's characters.
 *
 * @module
 */

import * as packet from "dns-packet";
import { parseArgs } from "node:util";
import { cacheKey, PvdCache } from "../src/cache/cache.ts";
import { indexResponse } from "../src/dns/response.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { bytes: { type: "string", default: "0" }, entries: { type: "string", default: "" } },
});
const answerBytes = Number(values.bytes);
const entries = Number(values.entries || (answerBytes > 8192 ? 5000 : 100000));
const CACHE = { minTtl: 0, maxTtl: 86400, negativeMaxTtl: 3600, servfailTtl: 2 };

/** TXT strings of 255 bytes (the last shorter) adding up to about `bytes` of record data. */
function txtSet(bytes: number): string[] {
  const out: string[] = [];
  for (let left = bytes; left > 0; left -= 256) out.push("x".repeat(Math.min(255, left - 1)));
  return out;
}

function answerFor(name: string): Uint8Array {
  const answers: packet.Answer[] = answerBytes > 0
    ? [{ type: "TXT", name, ttl: 3600, data: txtSet(answerBytes - 60 - name.length) }]
    : [{ type: "A", name, ttl: 3600, data: "198.51.100.1" }];
  return new Uint8Array(packet.encode({
    type: "response",
    id: 1,
    flags: 0x8180,
    questions: [{ name, type: answerBytes > 0 ? "TXT" : "A", class: "IN" }],
    answers,
    additionals: [{ type: "OPT", name: ".", udpPayloadSize: 1232 } as packet.Answer],
  }));
}

const gc = (globalThis as unknown as { gc: () => void }).gc;
const settled = () => {
  gc();
  gc();
  return Deno.memoryUsage();
};
const before = settled();
// Bounds far above what is stored: this measures what entries cost, not eviction. maxEntries is
// the count stored: lru-cache allocates its per-slot arrays for that many up front.
const cache = new PvdCache({ maxEntries: entries, maxBytes: 2 ** 40, maxEntryBytes: 65535 });
let wireBytes = 0;
const fill = (from: number, to: number) => {
  for (let i = from; i < to; i++) {
    const name = `n${i}.perf.example`;
    const stored = indexResponse(answerFor(name), Date.now(), CACHE);
    wireBytes += stored.wire.length;
    cache.set(cacheKey(name + ".", answerBytes > 0 ? 16 : 1, 1, false, false), stored);
  }
};
const half = Math.floor(entries / 2);
fill(0, half);
const middle = settled();
const chargedAtMiddle = cache.bytes;
fill(half, entries);
const after = settled();
/** Growth from `a` to `b` per entry of `n`, in bytes, for each figure. */
const per = (a: Deno.MemoryUsage, b: Deno.MemoryUsage, n: number) => {
  const f = (k: keyof Deno.MemoryUsage) => Math.round((b[k] - a[k]) / n);
  return `${f("heapUsed")} B of V8 heap (${f("heapTotal")} reserved), ${f("external")} B ` +
    `external, ${f("rss")} B of RSS`;
};
console.log(
  `${cache.size} entries of ${Math.round(wireBytes / entries)} wire bytes, per entry:\n` +
    `  all:         ${per(before, after, entries)}; charged ${
      Math.round(cache.bytes / entries)
    } B\n` +
    `  second half: ${per(middle, after, entries - half)}; charged ` +
    `${Math.round((cache.bytes - chargedAtMiddle) / (entries - half))} B`,
);

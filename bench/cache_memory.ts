/**
 * Memory held per cached answer, measured in-process after forced garbage collections: 100,000
 * typical A answers (wire form with an OPT record, as upstreams send them) indexed and stored in
 * one PvD's cache. Complements `bench/run.ts`, whose RSS figure is read from a live daemon right
 * after 100,000 misses and so also counts garbage not yet collected.
 *
 * Run: `deno run -A --v8-flags=--expose-gc bench/cache_memory.ts`
 *
 * @module
 */

import * as packet from "dns-packet";
import { cacheKey, PvdCache } from "../resolver/cache.ts";
import { indexResponse } from "../resolver/response.ts";
const CACHE = {
  maxEntries: 200000,
  minTtl: 0,
  maxTtl: 86400,
  negativeMaxTtl: 3600,
  servfailTtl: 2,
};
const gc = (globalThis as unknown as { gc: () => void }).gc;
gc();
gc();
const before = Deno.memoryUsage();
const cache = new PvdCache({ maxEntries: 200000 });
for (let i = 0; i < 100000; i++) {
  const name = `n${i}.perf.example`;
  const wire = new Uint8Array(
    packet.encode({
      type: "response",
      id: 1,
      flags: 0x8180,
      questions: [{ name, type: "A", class: "IN" }],
      answers: [{ type: "A", name, ttl: 3600, data: "198.51.100.1" }],
      additionals: [{ type: "OPT", name: ".", udpPayloadSize: 1232 } as packet.Answer],
    }),
  );
  cache.set(cacheKey(name + ".", 1, 1, false, false), indexResponse(wire, Date.now(), CACHE));
}
gc();
gc();
const after = Deno.memoryUsage();
const per = (a: number, b: number) => Math.round((b - a) / 100000);
console.log(
  `${cache.size} entries: per entry ${per(before.heapUsed, after.heapUsed)} B of V8 heap, ` +
    `${per(before.external, after.external)} B external, ${per(before.rss, after.rss)} B of RSS`,
);

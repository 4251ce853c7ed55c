/**
 * The per-PvD cache's entry bounds: `cache.maxEntries` per PvD and `cache.maxTotalEntries` over
 * all PvDs (the fullest PvD gives up its oldest entry), how long expired entries stay for
 * serve-stale, and where answers keep their bytes. The byte bounds are in
 * cache_bytes_test.ts.
 */
import assert from "node:assert/strict";
import { CacheBudget, PvdCache } from "../../src/cache/cache.ts";
import { LARGE_CHUNK_BYTES } from "../../src/cache/wire_slab.ts";
import type { StoredResponse } from "../../src/dns/response.ts";

function entry(
  ttl: number,
  storedAt = 0,
  kind: StoredResponse["kind"] = "positive",
): StoredResponse {
  return { wire: new Uint8Array(12), ttlOffsets: [], rcode: 0, storedAt, ttl, kind };
}

Deno.test("CacheBudget: the total over every PvD holds; the fullest PvD gives up its oldest entry", () => {
  const caches: PvdCache[] = [];
  const budget = new CacheBudget({ caches: () => caches, maxEntries: 4 });
  const home = new PvdCache({ maxEntries: 10, budget });
  const vpn = new PvdCache({ maxEntries: 10, budget });
  caches.push(home, vpn);
  for (const k of ["h1", "h2", "h3", "h4"]) home.set(k, entry(60));
  assert.equal(budget.total, 4);
  vpn.set("v1", entry(60));
  vpn.set("v2", entry(60));
  assert.equal(budget.total, 4, "never above the bound");
  assert.equal(vpn.size, 2, "the PvD that had nothing got its entries in");
  assert.equal(home.size, 2);
  assert.equal(home.get("h1", 0), undefined, "the oldest of the fullest PvD went first");
  assert.equal(home.get("h2", 0), undefined);
  assert.ok(home.get("h4", 0));
  assert.equal(budget.evictions, 2);
  // Replacing an entry that is there takes no room.
  vpn.set("v1", entry(60));
  assert.equal(budget.evictions, 2);
  // Growing past the bound in a flood: still bounded, and each PvD keeps a share.
  for (let i = 0; i < 1000; i++) vpn.set(`flood${i}`, entry(60));
  assert.equal(budget.total, 4);
  assert.deepEqual([home.size, vpn.size], [1, 3], "the flooding PvD evicts its own entries");
  assert.ok(home.get("h4", 0), "the other PvD's most recent answer survives the flood");
});

Deno.test("PvdCache.maxEntries: bounded per PvD whatever the total allows", () => {
  const cache = new PvdCache({ maxEntries: 3 });
  for (let i = 0; i < 100; i++) cache.set(`k${i}`, entry(60));
  assert.equal(cache.size, 3);
});

Deno.test("PvdCache stale window: expired entries kept only while they may be served stale", () => {
  const noStale = new PvdCache({ maxEntries: 10 });
  noStale.set("a", entry(10));
  assert.equal(noStale.get("a", 11_000), undefined);
  assert.equal(noStale.size, 0, "without serve-stale an expired entry is dropped at once");
  assert.equal(noStale.getStale("a", 11_000), undefined);

  const stale = new PvdCache({ maxEntries: 10, staleMs: 60_000 });
  stale.set("a", entry(10));
  stale.set("f", entry(10, 0, "servfail"));
  assert.equal(stale.get("a", 11_000), undefined, "not fresh");
  assert.ok(stale.getStale("a", 11_000), "but servable stale");
  assert.equal(stale.getStale("f", 11_000), undefined, "a SERVFAIL is never served stale");
  assert.ok(stale.getStale("a", 69_999));
  assert.equal(stale.getStale("a", 70_000), undefined, "60 s after expiry: gone");
  assert.equal(stale.get("a", 70_000), undefined);
  assert.equal(stale.size, 1, "and dropped on the next lookup");
});

function answer(n: number, length = 90): StoredResponse {
  const wire = new Uint8Array(length).map((_, i) => (n * 7 + i) & 0xff);
  return { wire, ttlOffsets: [], rcode: 0, storedAt: 0, ttl: 60, kind: "positive" };
}

Deno.test("PvdCache keeps answers' bytes in shared chunks, and moves the survivors of a chunk mostly emptied", () => {
  const cache = new PvdCache({ maxEntries: 2000 });
  for (let i = 0; i < 1000; i++) cache.set(`n${i}`, answer(i));
  // 96 bytes a slot, 16 KiB a chunk: 171 answers a chunk, not an ArrayBuffer each.
  assert.equal(cache.chunksMade, Math.ceil(1000 / Math.floor(16384 / 96)));
  for (let i = 0; i < 1000; i++) {
    assert.deepEqual(cache.get(`n${i}`, 0)?.wire, answer(i).wire, `n${i} intact`);
  }
  const before = cache.chunksMade;
  const first = cache.get("n0", 0)!.wire.buffer;
  const middle = cache.get("n500", 0)!.wire.buffer;
  // Replace all but every tenth of the first chunk's answers: the chunk is then 10% used.
  for (let i = 0; i < 171; i++) if (i % 10 !== 0) cache.set(`n${i}`, answer(i + 5000));
  const afterReplace = cache.chunksMade;
  for (let i = 0; i < 171; i += 10) {
    assert.deepEqual(cache.get(`n${i}`, 0)?.wire, answer(i).wire, `n${i} read (and moved) intact`);
  }
  assert.notEqual(cache.get("n0", 0)!.wire.buffer, first, "n0 left its emptied chunk");
  assert.equal(cache.get("n500", 0)!.wire.buffer, middle, "a full chunk's entries stay");
  // Read again: already moved, nothing more to copy.
  for (let i = 0; i < 171; i += 10) cache.get(`n${i}`, 0);
  assert.equal(cache.chunksMade, afterReplace, "18 small answers fit the current chunk");
  assert.ok(afterReplace > before, "the replacements went to a new chunk");
  for (let i = 0; i < 171; i++) {
    const want = i % 10 === 0 ? answer(i) : answer(i + 5000);
    assert.deepEqual(cache.get(`n${i}`, 0)?.wire, want.wire);
  }
  // Longer answers go in large chunks, the longest get a buffer of their own; all stay whole.
  const madeBeforeLarge = cache.chunksMade;
  cache.set("long", answer(1, 3000));
  assert.deepEqual(cache.get("long", 0)?.wire, answer(1, 3000).wire);
  assert.equal(cache.get("long", 0)?.wire.buffer.byteLength, LARGE_CHUNK_BYTES);
  assert.equal(cache.chunksMade, madeBeforeLarge + 1);
  const own = new PvdCache({ maxEntries: 10, maxEntryBytes: 65535 });
  own.set("big", answer(2, 40_000));
  assert.deepEqual(own.get("big", 0)?.wire, answer(2, 40_000).wire);
  assert.equal(own.get("big", 0)?.wire.buffer.byteLength, 40_000, "a buffer of its own");
  assert.equal(own.chunksMade, 0);
});

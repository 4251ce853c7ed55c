/**
 * The cache's bounds in bytes (issue 13): `cache.maxBytes` per PvD, counting what entries really
 * pin (the entry, its key, its slot, and chunk bytes dropped entries leave behind their
 * survivors), `cache.maxTotalBytes` over every PvD (the PvD holding most bytes gives up first),
 * and `cache.maxEntryBytes` (a longer answer is not cached).
 */
import assert from "node:assert/strict";
import { CacheBudget, ENTRY_OVERHEAD_BYTES, PvdCache } from "../../src/cache/cache.ts";
import type { StoredResponse } from "../../src/dns/response.ts";
import { BUFFER_OVERHEAD_BYTES, CHUNK_BYTES } from "../../src/cache/wire_slab.ts";

/** An answer of `length` bytes whose content tells `n` apart, fresh for `ttl` s from 0. */
function answer(n: number, length: number, ttl = 60): StoredResponse {
  const wire = new Uint8Array(length).map((_, i) => (n * 7 + i) & 0xff);
  return { wire, ttlOffsets: [], rcode: 0, storedAt: 0, ttl, kind: "positive" };
}

/**
 * 1 MiB: large chunks of 32 KiB; answers over 4 KiB get a buffer of their own. A 1,500-byte
 * answer takes a 1,504-byte slot (8-byte steps): 21 of them fill a large chunk.
 */
const MIB = 1024 * 1024;
const LARGE = 32 * 1024;

/**
 * Every distinct buffer the entries under `keys` refer to, and its size: what they pin.
 * `getStale` returns an entry without moving it, fresh or not.
 */
function pinned(cache: PvdCache, keys: Iterable<string>): number {
  const buffers = new Set<ArrayBufferLike>();
  for (const k of keys) {
    const e = cache.getStale(k, 0);
    if (e) buffers.add(e.wire.buffer);
  }
  return [...buffers].reduce((n, b) => n + b.byteLength, 0);
}

Deno.test("PvdCache.bytes: each entry's overhead, key and slot, and the whole of every chunk in use", async (t) => {
  await t.step("an answer with a buffer of its own: its charge exactly", () => {
    const cache = new PvdCache({ maxEntries: 100, maxBytes: MIB });
    cache.set("own", answer(1, 5000));
    assert.equal(cache.bytes, ENTRY_OVERHEAD_BYTES + 3 + 5000 + BUFFER_OVERHEAD_BYTES);
  });

  await t.step("an answer in a chunk: the chunk's whole size counts while it is current", () => {
    const cache = new PvdCache({ maxEntries: 100, maxBytes: MIB });
    cache.set("a", answer(1, 100));
    assert.equal(cache.bytes, ENTRY_OVERHEAD_BYTES + 1 + CHUNK_BYTES);
    cache.set("b", answer(2, 100));
    assert.equal(cache.bytes, 2 * (ENTRY_OVERHEAD_BYTES + 1) + CHUNK_BYTES, "same chunk");
    cache.set("c", answer(3, 1500));
    assert.equal(cache.bytes, 3 * (ENTRY_OVERHEAD_BYTES + 1) + CHUNK_BYTES + LARGE);
    cache.clear();
    assert.equal(cache.bytes, 0);
  });

  await t.step("survivors pin their chunks: bytes never below what the entries refer to", () => {
    const cache = new PvdCache({ maxEntries: 10_000, maxBytes: MIB });
    const keys: string[] = [];
    // 10 chunks of 21 answers; 20 of each 21 expire and are dropped when looked up.
    for (let i = 0; i < 210; i++) {
      keys.push(`k${i}`);
      cache.set(`k${i}`, answer(i, 1500, i % 21 === 0 ? 3600 : 10));
    }
    const survivors = keys.filter((_, i) => i % 21 === 0);
    for (const k of keys) if (!survivors.includes(k)) cache.get(k, 20_000);
    assert.equal(cache.size, 10);
    assert.equal(pinned(cache, survivors), 10 * LARGE, "each survivor holds its whole chunk");
    assert.ok(
      cache.bytes >= pinned(cache, survivors) + 10 * ENTRY_OVERHEAD_BYTES,
      `${cache.bytes} counts the pinned chunks`,
    );
  });
});

Deno.test("PvdCache.maxBytes: within the bound after every store; the oldest go first", async (t) => {
  await t.step("answers with buffers of their own", () => {
    const cache = new PvdCache({ maxEntries: 10_000, maxBytes: MIB });
    for (let i = 0; i < 1000; i++) {
      cache.set(`n${i}`, answer(i, 4500));
      assert.ok(cache.bytes <= MIB, `after n${i}: ${cache.bytes}`);
    }
    const each = ENTRY_OVERHEAD_BYTES + 4 + 4504 + BUFFER_OVERHEAD_BYTES;
    assert.equal(cache.size, Math.floor(MIB / each), "as many as fit");
    assert.equal(cache.get("n0", 0), undefined, "the oldest went");
    assert.deepEqual(cache.get("n999", 0)?.wire, answer(999, 4500).wire, "the newest stayed");
  });

  await t.step("survivors pinning chunks: the chunks count, so the survivors go", () => {
    const cache = new PvdCache({ maxEntries: 100_000, maxBytes: MIB });
    let now = 0;
    // Each round fills a chunk with one long-lived answer and 20 that expire and are dropped:
    // the entries take little, the chunks they leave pinned a lot.
    for (let round = 0; round < 100; round++) {
      const base = round * 21;
      for (let i = 0; i < 21; i++) {
        const r = answer(base + i, 1500, i === 0 ? 3600 : 1);
        cache.set(`r${base + i}`, { ...r, storedAt: now });
        assert.ok(cache.bytes <= MIB, `round ${round}: ${cache.bytes}`);
      }
      now += 2000;
      for (let i = 1; i < 21; i++) cache.get(`r${base + i}`, now);
    }
    const survivors = Array.from({ length: 100 }, (_, round) => `r${round * 21}`);
    const kept = survivors.filter((k) => cache.getStale(k, now));
    assert.ok(kept.length < 32, `${kept.length} survivors kept: at most 1 MiB of chunks`);
    assert.ok(kept.includes("r2079"), "the newest survivor is kept");
    assert.ok(!kept.includes("r0"), "the oldest went");
    assert.ok(cache.bytes >= pinned(cache, kept), "and their chunks are counted");
  });
});

Deno.test("PvdCache: moving the survivors of a sparse chunk keeps the bound", () => {
  const cache = new PvdCache({ maxEntries: 100_000, maxBytes: MIB });
  const all = Array.from({ length: 21 * 40 }, (_, i) => i);
  // 21 answers a chunk; the first 5 of each chunk stay, the others are replaced by short answers
  // (which go to small chunks): each large chunk is then under a quarter used.
  for (const i of all) cache.set(`m${i}`, answer(i, 1500));
  for (const i of all) {
    if (i % 21 >= 5 && cache.getStale(`m${i}`, 0)) cache.set(`m${i}`, answer(i, 80));
  }
  // Short answers until the cache is at its bound (each takes ~420 bytes).
  for (let i = 0; i < 20_000 && cache.bytes < MIB - 2048; i++) cache.set(`t${i}`, answer(i, 80));
  assert.ok(cache.bytes >= MIB - 2048, `at the bound: ${cache.bytes}`);
  const made = cache.chunksMade;
  let moved = 0;
  // One survivor of each chunk, then the next: chunks are left only after their last moved.
  const order = all.filter((i) => i % 21 < 5).sort((a, b) => a % 21 - b % 21 || a - b);
  for (const i of order) {
    const before = cache.getStale(`m${i}`, 0)?.wire.buffer;
    const hit = cache.get(`m${i}`, 0);
    if (hit && hit.wire.buffer !== before) moved++;
    assert.ok(cache.bytes <= MIB, `after reading m${i}: ${cache.bytes}`);
  }
  assert.ok(moved > 21 && cache.chunksMade > made, `${moved} answers moved into new chunks`);
});

Deno.test("PvdCache.maxEntryBytes: a longer answer is not cached, counted, and drops the older one", () => {
  const limits: string[] = [];
  const cache = new PvdCache({ maxEntries: 10, maxBytes: MIB, onLimit: (l) => limits.push(l) });
  assert.equal(cache.maxEntryBytes, 16384, "min(16 KiB, maxBytes / 64)");
  cache.set("fits", answer(1, 16384));
  assert.deepEqual(cache.get("fits", 0)?.wire, answer(1, 16384).wire);
  assert.deepEqual([...limits], []);
  cache.set("fits", answer(2, 16385));
  assert.equal(cache.get("fits", 0), undefined, "not cached, and the older answer is gone");
  assert.deepEqual([...limits], ["cache_entry_bytes"]);
  assert.equal(cache.size, 0);
  assert.equal(cache.bytes, 0);

  const small = new PvdCache({ maxEntries: 10, maxBytes: 128 * 1024 });
  assert.equal(small.maxEntryBytes, 2048, "1/64 of a small bound");
  small.set("x", answer(3, 2049));
  assert.equal(small.size, 0);

  // Configured above what the bound holds: the bound wins (lru-cache would drop it silently).
  const tight = new PvdCache({
    maxEntries: 10,
    maxBytes: 64 * 1024,
    maxEntryBytes: 65535,
    onLimit: (l) => limits.push(l),
  });
  tight.set("huge", answer(4, 65535));
  assert.equal(tight.size, 0);
  assert.equal(tight.bytes, 0, "nothing held for it");
  assert.equal(limits.length, 2);
});

Deno.test("CacheBudget.maxBytes: the total holds; the PvD with most bytes gives up first", () => {
  const caches: PvdCache[] = [];
  const budget = new CacheBudget({ caches: () => caches, maxBytes: 200 * 1024 });
  const light = new PvdCache({ maxEntries: 10_000, maxBytes: MIB, budget });
  const heavy = new PvdCache({ maxEntries: 10_000, maxBytes: MIB, budget, maxEntryBytes: 65535 });
  caches.push(light, heavy);
  // Heavy: 20 answers of 6 KB (buffers of their own). Light: many one-record answers.
  for (let i = 0; i < 20; i++) heavy.set(`h${i}`, answer(i, 6000));
  for (let i = 0; i < 100; i++) light.set(`l${i}`, answer(i, 80));
  assert.ok(light.size > heavy.size && heavy.bytes > light.bytes);
  const heavyBefore = heavy.size;
  for (let i = 100; i < 200; i++) {
    light.set(`l${i}`, answer(i, 80));
    assert.ok(budget.totalBytes <= budget.maxBytes, `after l${i}: ${budget.totalBytes}`);
  }
  assert.equal(light.size, 200, "the PvD with most entries but fewer bytes kept all");
  assert.ok(heavy.size < heavyBefore, "the heavy PvD gave up entries");
  assert.equal(heavy.get("h0", 0), undefined, "its oldest first");
  assert.ok(heavy.get("h19", 0), "its newest stays");
  assert.equal(budget.evictions, heavyBefore - heavy.size);
});

Deno.test("CacheBudget.maxEntries still bounds entries when bytes are plenty", () => {
  const caches: PvdCache[] = [];
  const budget = new CacheBudget({ caches: () => caches, maxEntries: 50, maxBytes: 64 * MIB });
  const a = new PvdCache({ maxEntries: 1000, budget });
  const b = new PvdCache({ maxEntries: 1000, budget });
  caches.push(a, b);
  for (let i = 0; i < 40; i++) a.set(`a${i}`, answer(i, 80));
  for (let i = 0; i < 40; i++) {
    b.set(`b${i}`, answer(i, 80));
    assert.ok(budget.total <= 50);
  }
  assert.equal(budget.total, 50);
  // (A tie goes to the first PvD, so they may end one apart either way.)
  assert.ok(Math.abs(a.size - b.size) <= 2, `the fullest by entries gave up: ${a.size}, ${b.size}`);
});

Deno.test("PvdCache emptied by expiry holds no bytes, and the shared budget takes from a PvD with entries", () => {
  const caches: PvdCache[] = [];
  const budget = new CacheBudget({ caches: () => caches, maxBytes: 256 * 1024 });
  const emptied = new PvdCache({ maxEntries: 100, maxBytes: MIB, budget });
  const busy = new PvdCache({ maxEntries: 10_000, maxBytes: MIB, budget });
  caches.push(emptied, busy);
  emptied.set("gone", answer(1, 1500, 1)); // opens a large chunk (32 KiB)
  assert.ok(emptied.bytes > LARGE);
  assert.equal(emptied.get("gone", 2000), undefined, "expired, and dropped");
  assert.equal(emptied.size, 0);
  assert.equal(emptied.bytes, 0, "its current chunk went with its last entry");
  for (let i = 0; i < 1000; i++) {
    busy.set(`b${i}`, answer(i, 1500));
    assert.ok(budget.totalBytes <= budget.maxBytes, `after b${i}: ${budget.totalBytes}`);
  }
  assert.ok(busy.size > 100, `${busy.size} entries: the budget is used, not wasted`);
});

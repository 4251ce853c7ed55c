/**
 * The per-PvD answer cache. Each PvD owns a separate LRU, so an answer learned in one PvD can
 * never be found by a lookup in another (DESIGN invariant 3): the PvD is the first part of the
 * key by construction, not by string concatenation.
 *
 * Each cache is bounded in entries and in bytes, and so is their sum over the PvDs
 * ({@linkcode CacheBudget}): bounded in entries alone, a flood of 60 KB answers for distinct
 * names took 6 GB (`bench/cache_flood.ts` in bench/README.md). The bytes are what an entry really
 * holds, not its wire length:
 * see {@linkcode PvdCache}.
 *
 * @module
 */

import { LRUCache } from "lru-cache";
import type { StoredResponse } from "../dns/response.ts";
import { largeChunkFor, type SlabChunk, WireSlab } from "./wire_slab.ts";

/** A cached answer: its bytes live in the cache's slab (`chunk`), not in a buffer of their own. */
interface CachedResponse extends StoredResponse {
  readonly chunk: SlabChunk | undefined;
}

/**
 * The key of one cached question inside a PvD: lower-case name, type, class, DO and CD bits.
 *
 * @example Usage
 * ```ts
 * import { cacheKey } from "./cache.ts";
 * cacheKey("example.org.", 1, 1, false, false); // "example.org.|1|1|00"
 * ```
 */
export function cacheKey(
  qname: string,
  qtype: number,
  qclass: number,
  dnssecOk: boolean,
  checkingDisabled: boolean,
): string {
  return `${qname}|${qtype}|${qclass}|${dnssecOk ? 1 : 0}${checkingDisabled ? 1 : 0}`;
}

/**
 * A stale answer served again (RFC 8767): a copy with TTL 30 s, which remembers when the
 * answer it was made from expired, so that serving it stale never extends its stale life.
 */
export interface StaleResponse extends StoredResponse {
  /** When the original answer expired (clock ms). */
  readonly expiredAt: number;
}

/** When `r` stopped (or stops) being fresh, or, for a stale copy, when its original did. */
function expiryOf(r: StoredResponse): number {
  return (r as Partial<StaleResponse>).expiredAt ?? r.storedAt + r.ttl * 1000;
}

/** Options of {@linkcode CacheBudget}. */
export interface CacheBudgetOptions {
  /** The caches in force (read on each check, so PvDs may come and go). */
  readonly caches: () => Iterable<PvdCache>;
  /** The most entries over all PvDs. @default Infinity */
  readonly maxEntries?: number;
  /** The most bytes over all PvDs, as {@linkcode PvdCache.bytes} counts them. @default Infinity */
  readonly maxBytes?: number;
}

/**
 * The bounds over every PvD's cache (`cache.maxTotalEntries`, `cache.maxTotalBytes`). When one
 * is reached, the fullest PvD (by entries for the first, by bytes for the second) gives up its
 * least recently used entries: one PvD that is asked a lot cannot push every other PvD's answers
 * out, and no PvD ever sees another's entries.
 */
export class CacheBudget {
  /** The most entries over all PvDs. */
  maxEntries: number;
  /** The most bytes over all PvDs. */
  maxBytes: number;
  #caches: () => Iterable<PvdCache>;
  /** Entries given up to keep within the bounds. */
  evictions = 0;

  /** Creates the budget; the bounds may be changed later (a reload). */
  constructor(options: CacheBudgetOptions) {
    this.maxEntries = options.maxEntries ?? Infinity;
    this.maxBytes = options.maxBytes ?? Infinity;
    this.#caches = options.caches;
  }

  /** Entries held now over every PvD. */
  get total(): number {
    let n = 0;
    for (const c of this.#caches()) n += c.size;
    return n;
  }

  /** Bytes held now over every PvD. */
  get totalBytes(): number {
    let n = 0;
    for (const c of this.#caches()) n += c.bytes;
    return n;
  }

  /**
   * Gives up entries until `entries` more entries and `bytes` more bytes fit (0, 0: until the
   * bounds hold). Each round drops one entry, so it ends within the number of entries held.
   */
  makeRoom(bytes = 0, entries = 0): void {
    if (this.maxEntries === Infinity && this.maxBytes === Infinity) return;
    for (;;) {
      let total = 0, totalBytes = 0;
      let fullest: PvdCache | undefined, heaviest: PvdCache | undefined;
      for (const c of this.#caches()) {
        total += c.size;
        totalBytes += c.bytes;
        if (c.size === 0) continue; // (its current chunks may count, but it has nothing to give)
        if (!fullest || c.size > fullest.size) fullest = c;
        if (!heaviest || c.bytes > heaviest.bytes) heaviest = c;
      }
      const victim = total + entries > this.maxEntries
        ? fullest
        : totalBytes + bytes > this.maxBytes
        ? heaviest
        : undefined;
      if (!victim || victim.size === 0) return;
      victim.evictOldest();
      this.evictions++;
    }
  }
}

/**
 * Passed to lru-cache's `get()`, whose default parameter is a fresh `{}` per call: on the
 * cache-hit path that is garbage for every query. (lru-cache writes `status: undefined` into it.)
 */
const NO_OPTIONS = {};

/**
 * One array per distinct list of TTL offsets, shared by every entry with that list: answers of
 * one shape (one A record for a name of a given length, …) have the same offsets, and an array
 * per entry was ~56 of the ~400 bytes an entry holds. Bounded: cleared when full.
 */
const offsetLists = new Map<string, readonly number[]>();
const MAX_OFFSET_LISTS = 4096;

const MAX_SHARED_OFFSETS = 8;

function sharedOffsets(offsets: readonly number[]): readonly number[] {
  if (offsets.length > MAX_SHARED_OFFSETS) return offsets;
  const key = offsets.join();
  const known = offsetLists.get(key);
  if (known) return known;
  if (offsetLists.size >= MAX_OFFSET_LISTS) offsetLists.clear();
  offsetLists.set(key, offsets);
  return offsets;
}

/** Default of `cache.maxBytes`: 64 MiB per PvD. */
export const DEFAULT_MAX_BYTES = 64 * 1024 * 1024;
/** Default of `cache.maxTotalBytes`: 256 MiB over every PvD. */
export const DEFAULT_MAX_TOTAL_BYTES = 256 * 1024 * 1024;

/**
 * What an entry costs besides its bytes in the slab: the entry object, its `wire` view, the LRU's
 * slots for it (key, value, links, size) and its key string's header; its key's characters are
 * charged on top (`key.length`). Measured with `bench/cache_memory.ts` (one more entry after
 * forced GCs, one-A answers: 318 B of V8 heap with 27-character keys, and 72 B external, its
 * slot: charged 427 B in all; RSS 390–580 B, as the heap's pages fall).
 */
export const ENTRY_OVERHEAD_BYTES = 328;

/**
 * `cache.maxEntryBytes` when absent: 16 KiB, or 1/64 of the PvD's bytes when that is less.
 *
 * @example Usage
 * ```ts
 * import { defaultMaxEntryBytes } from "./cache.ts";
 * defaultMaxEntryBytes(64 * 1024 * 1024); // 16384
 * defaultMaxEntryBytes(256 * 1024); // 4096
 * ```
 */
export function defaultMaxEntryBytes(maxBytes: number): number {
  return Math.min(16 * 1024, Math.floor(maxBytes / 64));
}

/** Heap bytes of a TTL-offset list of `n` numbers that is not shared (a JS array of smis). */
function offsetListBytes(n: number): number {
  return n > MAX_SHARED_OFFSETS ? 16 + 8 * n : 0;
}

/** Options of {@linkcode PvdCache}. */
export interface PvdCacheOptions {
  /** Most entries kept; the least recently used go first. */
  readonly maxEntries: number;
  /**
   * Most bytes kept, as {@linkcode PvdCache.bytes} counts them; the least recently used go
   * first. At least 64 KiB (the config's minimum): a bound below one chunk holds nothing.
   * @default 67108864 (64 MiB)
   */
  readonly maxBytes?: number;
  /**
   * An answer longer than this (wire bytes) is not cached.
   * @default min(16384, maxBytes / 64)
   */
  readonly maxEntryBytes?: number;
  /** The bounds shared with the other PvDs' caches. */
  readonly budget?: CacheBudget;
  /**
   * How long past expiry an entry is kept for serve-stale, ms; 0 drops it at expiry.
   * @default 0
   */
  readonly staleMs?: number;
  /** Told `cache_entry_bytes` when an answer is too long to cache (metrics). */
  readonly onLimit?: (limit: string) => void;
}

/**
 * One PvD's cache of wire-form responses, bounded in entries and in bytes, expiring by TTL.
 * Each entry is charged {@linkcode ENTRY_OVERHEAD_BYTES}, its key's length, its TTL-offset list
 * when that is not shared, and its slot in the slab (its wire bytes in 8-byte steps; an own
 * buffer's overhead when it has one). {@linkcode PvdCache.bytes} adds the slab's slack: the
 * unfilled tails of the current chunks and the slots of dropped entries in chunks that a
 * survivor still pins, since such a chunk is memory until its last entry goes. So the bound is
 * on memory held, not on what the entries would take packed.
 */
export class PvdCache {
  #lru: LRUCache<string, CachedResponse>;
  #slab: WireSlab;
  #budget: CacheBudget | undefined;
  #staleMs: number;
  #onLimit: ((limit: string) => void) | undefined;
  /** The bound on {@linkcode PvdCache.bytes}. */
  readonly maxBytes: number;
  /** The longest answer cached, wire bytes. */
  readonly maxEntryBytes: number;

  /** Creates an empty cache. */
  constructor(options: PvdCacheOptions) {
    this.maxBytes = options.maxBytes ?? DEFAULT_MAX_BYTES;
    this.maxEntryBytes = options.maxEntryBytes ?? defaultMaxEntryBytes(this.maxBytes);
    this.#slab = new WireSlab({ largeChunkBytes: largeChunkFor(this.maxBytes) });
    this.#lru = new LRUCache<string, CachedResponse>({
      max: options.maxEntries,
      maxSize: this.maxBytes,
      dispose: (entry) => this.#slab.release(entry.chunk, entry.wire.length),
    });
    this.#budget = options.budget;
    this.#staleMs = options.staleMs ?? 0;
    this.#onLimit = options.onLimit;
  }

  /** The fresh entry for `key` at clock time `now` (ms), or undefined. */
  get(key: string, now: number): StoredResponse | undefined {
    const hit = this.#lru.get(key, NO_OPTIONS);
    if (hit === undefined) return undefined;
    if (now >= hit.storedAt + hit.ttl * 1000) {
      // Expired: kept only while it may still be served stale.
      if (now >= expiryOf(hit) + this.#staleMs) this.#drop(key);
      return undefined;
    }
    if (this.#slab.sparse(hit.chunk)) return this.#move(key, hit);
    return hit;
  }

  /** The entry with its bytes copied to the current chunk, so that its old chunk can go. */
  #move(key: string, entry: CachedResponse): CachedResponse {
    const { wire, chunk } = this.#slab.copy(entry.wire);
    const moved = { ...entry, wire, chunk };
    // Releases the old slot; the copy may have opened a chunk, whose whole size counts at once.
    this.#lru.set(key, moved, { size: this.#charge(key, moved) });
    this.#trim();
    this.#budget?.makeRoom();
    return moved;
  }

  /** What `response` under `key` is charged, beside the slab's slack. */
  #charge(key: string, response: StoredResponse): number {
    return ENTRY_OVERHEAD_BYTES + key.length + offsetListBytes(response.ttlOffsets.length) +
      this.#slab.slotBytes(response.wire.length);
  }

  /** Drops the least recently used entries until this cache is within its bytes. */
  #trim(): void {
    while (this.bytes > this.maxBytes && this.#lru.size > 0) this.#lru.pop();
    if (this.#lru.size === 0) this.#slab.reset();
  }

  /** Drops the entry for `key`; the last one gone, the current chunks go too. */
  #drop(key: string): void {
    this.#lru.delete(key);
    if (this.#lru.size === 0) this.#slab.reset();
  }

  /** Chunks the cache's slab has made so far (for tests). */
  get chunksMade(): number {
    return this.#slab.chunksMade;
  }

  /**
   * An expired answer (positive or negative) for `key` that may still be served stale at `now`,
   * or undefined. Only this PvD's entries exist here.
   */
  getStale(key: string, now: number): StoredResponse | undefined {
    const entry = this.#lru.get(key, NO_OPTIONS);
    if (!entry || (entry.kind !== "positive" && entry.kind !== "negative")) return undefined;
    return now < expiryOf(entry) + this.#staleMs ? entry : undefined;
  }

  /**
   * Stores `response` when it may be cached: TTL above zero, no longer than
   * {@linkcode PvdCache.maxEntryBytes}, and a charge within this cache's bytes and the shared
   * budget's. An answer refused for its size is counted (`cache_entry_bytes`) and replaces
   * nothing: an older answer for the key is dropped, so that it is not served stale instead.
   */
  set(key: string, response: StoredResponse): void {
    if (response.ttl <= 0) return;
    const size = this.#charge(key, response);
    if (
      response.wire.length > this.maxEntryBytes || size > this.maxBytes ||
      size > (this.#budget?.maxBytes ?? Infinity)
    ) {
      // (lru-cache would refuse an entry over maxSize silently, and its slot would never be
      // released.)
      this.#drop(key);
      this.#onLimit?.("cache_entry_bytes");
      return;
    }
    if (this.#budget) {
      const old = this.#lru.peek(key);
      const freed = old ? this.#charge(key, old) : 0;
      this.#budget.makeRoom(size - freed, old ? 0 : 1);
    }
    const { wire, chunk } = this.#slab.copy(response.wire);
    const ttlOffsets = sharedOffsets(response.ttlOffsets);
    this.#lru.set(key, { ...response, wire, chunk, ttlOffsets }, { size });
    this.#trim();
    this.#budget?.makeRoom(); // a new chunk adds its whole size at once
  }

  /** Drops the least recently used entry (the shared budget is full). */
  evictOldest(): void {
    this.#lru.pop();
    if (this.#lru.size === 0) this.#slab.reset();
  }

  /** Drops every entry. */
  clear(): void {
    this.#lru.clear();
    this.#slab.reset();
  }

  /** Number of entries held (some may have expired and not yet been dropped). */
  get size(): number {
    return this.#lru.size;
  }

  /**
   * Bytes held: what the entries are charged, plus the chunk bytes the slab holds beyond their
   * slots (tails not yet filled, slots of dropped entries in chunks still in use).
   */
  get bytes(): number {
    return this.#lru.calculatedSize + this.#slab.slackBytes;
  }
}

/**
 * The per-PvD answer cache. Each PvD owns a separate LRU, so an answer learned in one PvD can
 * never be found by a lookup in another (DESIGN invariant 3): the PvD is the first part of the
 * key by construction, not by string concatenation.
 *
 * @module
 */

import { LRUCache } from "lru-cache";
import type { StoredResponse } from "./response.ts";
import { type SlabChunk, WireSlab } from "./wire_slab.ts";

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

/**
 * The bound on entries over every PvD's cache (`cache.maxTotalEntries`). When it is reached,
 * the fullest PvD gives up its least recently used entry: one PvD that is asked a lot cannot
 * push every other PvD's answers out, and no PvD ever sees another's entries.
 */
export class CacheBudget {
  /** The most entries over all PvDs. */
  max: number;
  #caches: () => Iterable<PvdCache>;
  /** Entries given up to keep within the bound. */
  evictions = 0;

  /**
   * @param max The bound.
   * @param caches The caches in force (read on each check, so PvDs may come and go).
   */
  constructor(max: number, caches: () => Iterable<PvdCache>) {
    this.max = max;
    this.#caches = caches;
  }

  /** Entries held now over every PvD. */
  get total(): number {
    let n = 0;
    for (const c of this.#caches()) n += c.size;
    return n;
  }

  /** Frees one slot when the bound is reached, before a new entry goes in. */
  makeRoom(): void {
    let total = 0;
    let fullest: PvdCache | undefined;
    for (const c of this.#caches()) {
      total += c.size;
      if (!fullest || c.size > fullest.size) fullest = c;
    }
    if (total < this.max || !fullest || fullest.size === 0) return;
    fullest.evictOldest();
    this.evictions++;
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

function sharedOffsets(offsets: readonly number[]): readonly number[] {
  if (offsets.length > 8) return offsets;
  const key = offsets.join();
  const known = offsetLists.get(key);
  if (known) return known;
  if (offsetLists.size >= MAX_OFFSET_LISTS) offsetLists.clear();
  offsetLists.set(key, offsets);
  return offsets;
}

/** Options of {@linkcode PvdCache}. */
export interface PvdCacheOptions {
  /** Most entries kept; the least recently used go first. */
  readonly maxEntries: number;
  /** The bound shared with the other PvDs' caches. */
  readonly budget?: CacheBudget;
  /**
   * How long past expiry an entry is kept for serve-stale, ms; 0 drops it at expiry.
   * @default 0
   */
  readonly staleMs?: number;
}

/** One PvD's cache of wire-form responses, bounded in entries, expiring by TTL. */
export class PvdCache {
  #lru: LRUCache<string, CachedResponse>;
  #slab = new WireSlab();
  #budget: CacheBudget | undefined;
  #staleMs: number;

  /** Creates an empty cache. */
  constructor(options: PvdCacheOptions) {
    this.#lru = new LRUCache<string, CachedResponse>({
      max: options.maxEntries,
      dispose: (entry) => this.#slab.release(entry.chunk),
    });
    this.#budget = options.budget;
    this.#staleMs = options.staleMs ?? 0;
  }

  /** The fresh entry for `key` at clock time `now` (ms), or undefined. */
  get(key: string, now: number): StoredResponse | undefined {
    const hit = this.#lru.get(key, NO_OPTIONS);
    if (hit === undefined) return undefined;
    if (now >= hit.storedAt + hit.ttl * 1000) {
      // Expired: kept only while it may still be served stale.
      if (now >= expiryOf(hit) + this.#staleMs) this.#lru.delete(key);
      return undefined;
    }
    if (this.#slab.sparse(hit.chunk)) return this.#move(key, hit);
    return hit;
  }

  /** The entry with its bytes copied to the current chunk, so that its old chunk can go. */
  #move(key: string, entry: CachedResponse): CachedResponse {
    const { wire, chunk } = this.#slab.copy(entry.wire);
    const moved = { ...entry, wire, chunk };
    this.#lru.set(key, moved, NO_OPTIONS); // releases the old entry's place
    return moved;
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
    const entry = this.#lru.get(key);
    if (!entry || (entry.kind !== "positive" && entry.kind !== "negative")) return undefined;
    return now < expiryOf(entry) + this.#staleMs ? entry : undefined;
  }

  /** Stores `response` when it may be cached (TTL above zero). */
  set(key: string, response: StoredResponse): void {
    if (response.ttl <= 0) return;
    if (this.#budget && !this.#lru.has(key)) this.#budget.makeRoom();
    const { wire, chunk } = this.#slab.copy(response.wire);
    const ttlOffsets = sharedOffsets(response.ttlOffsets);
    this.#lru.set(key, { ...response, wire, chunk, ttlOffsets });
  }

  /** Drops the least recently used entry (the shared budget is full). */
  evictOldest(): void {
    this.#lru.pop();
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
}

/**
 * The per-PvD answer cache. Each PvD owns a separate LRU, so an answer learned in one PvD can
 * never be found by a lookup in another (DESIGN invariant 3): the PvD is the first part of the
 * key by construction, not by string concatenation.
 *
 * @module
 */

import { LRUCache } from "lru-cache";
import type { StoredResponse } from "./response.ts";

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

/** Options of {@linkcode PvdCache}. */
export interface PvdCacheOptions {
  /** Most entries kept; the least recently used go first. */
  readonly maxEntries: number;
}

/** One PvD's cache of wire-form responses, bounded in entries, expiring by TTL. */
export class PvdCache {
  #lru: LRUCache<string, StoredResponse>;

  /** Creates an empty cache. */
  constructor(options: PvdCacheOptions) {
    this.#lru = new LRUCache({ max: options.maxEntries });
  }

  /** The fresh entry for `key` at clock time `now` (ms), or undefined; expired entries are dropped. */
  get(key: string, now: number): StoredResponse | undefined {
    const hit = this.#lru.get(key);
    if (hit === undefined) return undefined;
    if (now >= hit.storedAt + hit.ttl * 1000) {
      this.#lru.delete(key);
      return undefined;
    }
    return hit;
  }

  /** Stores `response` when it may be cached (TTL above zero). */
  set(key: string, response: StoredResponse): void {
    if (response.ttl > 0) this.#lru.set(key, response);
  }

  /** Drops every entry. */
  clear(): void {
    this.#lru.clear();
  }

  /** Number of entries held (some may have expired and not yet been dropped). */
  get size(): number {
    return this.#lru.size;
  }
}

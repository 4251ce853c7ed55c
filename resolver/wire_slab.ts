/**
 * Where one PvD's cached answers keep their bytes: 16 KiB chunks shared by many entries instead
 * of one ArrayBuffer per entry. Under Deno every ArrayBuffer costs about 300 bytes of native
 * memory besides its bytes (its backing store's bookkeeping), three times a typical answer: with
 * 100,000 cached names that was a third of pvdns's memory (issue 7: RSS per cached entry ~1.1 KB
 * → ~0.75 KB).
 *
 * A chunk is freed by the garbage collector once no entry refers to it. So that a few entries
 * cannot pin many mostly empty chunks, each chunk counts the entries still using it (the cache
 * tells {@linkcode WireSlab.release} when it drops one), and an entry read from a chunk that is
 * less than a quarter used is moved to the current chunk ({@linkcode WireSlab.sparse}). An entry
 * never read again goes with the least recently used ones, which are its chunk's neighbours.
 *
 * @module
 */

/** One chunk: its bytes, how far it is filled, how many entries it got and still has. */
export interface SlabChunk {
  readonly bytes: Uint8Array;
  used: number;
  entries: number;
  live: number;
}

/** Bytes copied into a slab, and the chunk they are in (none for a big answer). */
export interface SlabBytes {
  readonly wire: Uint8Array;
  readonly chunk: SlabChunk | undefined;
}

/** Size of a chunk. */
export const CHUNK_BYTES = 16 * 1024;
/** Answers longer than this get a buffer of their own (they are rare, and would waste a chunk). */
const MAX_SHARED = 1024;

/** Chunks for one cache's answer bytes. */
export class WireSlab {
  #current: SlabChunk | undefined;
  /** Chunks made so far (for tests and figures). */
  chunksMade = 0;

  /** A copy of `bytes` in the current chunk (a new one when it is full). */
  copy(bytes: Uint8Array): SlabBytes {
    const n = bytes.length;
    if (n > MAX_SHARED) return { wire: bytes.slice(), chunk: undefined };
    let chunk = this.#current;
    if (!chunk || chunk.used + n > CHUNK_BYTES) {
      chunk = this.#current = { bytes: new Uint8Array(CHUNK_BYTES), used: 0, entries: 0, live: 0 };
      this.chunksMade++;
    }
    const wire = chunk.bytes.subarray(chunk.used, chunk.used + n);
    wire.set(bytes);
    chunk.used += (n + 7) & ~7; // 8-byte steps: TTL fields stay within one cache line more often
    chunk.entries++;
    chunk.live++;
    return { wire, chunk };
  }

  /** The cache dropped an entry whose bytes are in `chunk`. */
  release(chunk: SlabChunk | undefined): void {
    if (chunk) chunk.live--;
  }

  /** True when an entry in `chunk` should move: the chunk is old and less than a quarter used. */
  sparse(chunk: SlabChunk | undefined): boolean {
    return chunk !== undefined && chunk !== this.#current && chunk.live * 4 < chunk.entries;
  }

  /** Forgets the current chunk (the cache was cleared). */
  reset(): void {
    this.#current = undefined;
  }
}

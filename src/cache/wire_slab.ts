/**
 * Where one PvD's cached answers keep their bytes: chunks shared by many entries instead of one
 * ArrayBuffer per entry. Under Deno every ArrayBuffer costs about 300 bytes of native memory
 * besides its bytes (its backing store's bookkeeping), three times a typical answer: with
 * 100,000 cached names that was a third of pvdns's memory (bench/README.md, "What moved the
 * figures": RSS per cached entry
 * ~1.1 KB → ~0.75 KB). Answers up to 1 KiB go in 16 KiB chunks; longer ones, up to an eighth of
 * a large chunk, in large chunks (256 KiB, less for a small cache: {@linkcode largeChunkFor}), so
 * that a flood of big answers does not interleave each kept buffer with the transient buffers it
 * was read from, leaving malloc's heap full of holes (`bench/cache_memory.ts`, bench/README.md: a
 * 4.3 KB
 * answer in a buffer of its own cost 6.1–6.3 KB of RSS, in a shared chunk 4.9–5.3 KB). Only an
 * answer longer than that (32 KiB) gets a buffer of its own: there the buffer's overhead is under
 * 1%, and a chunk's unfillable tail would cost more.
 *
 * A chunk is freed by the garbage collector once no entry refers to it. So that a few entries
 * cannot pin many mostly empty chunks, each chunk counts the bytes of the entries still using it
 * (the cache tells {@linkcode WireSlab.release} when it drops one), and an entry read from a
 * chunk less than a quarter used is moved to the current chunk ({@linkcode WireSlab.sparse}). An
 * entry never read again goes with the least recently used ones, which are its chunk's
 * neighbours. Until then its chunk's whole size counts: {@linkcode WireSlab.slackBytes} is what
 * held chunks hold beyond their entries' slots, and the cache adds it to its byte figure, so
 * that the bound on bytes is a bound on memory, not on what entries would take if packed.
 *
 * @module
 */

/** One chunk: its bytes, how far it is filled, how many entries and bytes it still has. */
export interface SlabChunk {
  readonly bytes: Uint8Array;
  /** Bytes handed out so far (slots in 8-byte steps). */
  used: number;
  /** Entries still cached in it. */
  live: number;
  /** Bytes of the slots of those entries. */
  liveBytes: number;
}

/** Bytes copied into a slab, and the chunk they are in (none for an answer with its own). */
export interface SlabBytes {
  readonly wire: Uint8Array;
  readonly chunk: SlabChunk | undefined;
}

/** Options of {@linkcode WireSlab}. */
export interface WireSlabOptions {
  /**
   * Size of a chunk for answers over 1 KiB; answers over an eighth of it get their own buffer.
   * @default 262144
   */
  readonly largeChunkBytes?: number;
}

/** Size of a chunk for answers up to {@linkcode MAX_SMALL} bytes. */
export const CHUNK_BYTES = 16 * 1024;
/** Largest answer that goes in a small chunk. */
export const MAX_SMALL = 1024;
/** Default size of a chunk for longer answers. */
export const LARGE_CHUNK_BYTES = 256 * 1024;
/**
 * Native memory an ArrayBuffer costs besides its bytes (its backing store's bookkeeping, and
 * its JS objects), charged to an answer that has a buffer of its own.
 */
export const BUFFER_OVERHEAD_BYTES = 320;

/**
 * The large-chunk size for a cache bounded to `maxBytes`: 1/32 of it (a power of two), from 16 to
 * 256 KiB, so that one chunk's unfilled tail is a small part of the bound.
 *
 * @example Usage
 * ```ts
 * import { largeChunkFor } from "./wire_slab.ts";
 * largeChunkFor(64 * 1024 * 1024); // 262144
 * largeChunkFor(1024 * 1024); // 32768
 * ```
 */
export function largeChunkFor(maxBytes: number): number {
  let size = LARGE_CHUNK_BYTES;
  while (size > CHUNK_BYTES && size * 32 > maxBytes) size >>= 1;
  return size;
}

/** The 8-byte step slots are handed out in: TTL fields stay within one cache line more often. */
function slotOf(length: number): number {
  return (length + 7) & ~7;
}

/** Chunks for one cache's answer bytes, and the bytes they hold. */
export class WireSlab {
  #small: SlabChunk | undefined;
  #large: SlabChunk | undefined;
  #largeChunkBytes: number;
  #maxShared: number;
  /** Bytes of the chunks and own buffers held (current, or with an entry in them). */
  #held = 0;
  /** Bytes of the slots of every entry held. */
  #liveSlots = 0;
  /** Chunks made so far (for tests and figures). */
  chunksMade = 0;

  /** Creates an empty slab. */
  constructor(options: WireSlabOptions = {}) {
    this.#largeChunkBytes = options.largeChunkBytes ?? LARGE_CHUNK_BYTES;
    this.#maxShared = Math.max(MAX_SMALL, this.#largeChunkBytes >> 3);
  }

  /**
   * Bytes an answer of `length` bytes takes here: its slot, or its own buffer and that
   * buffer's overhead.
   */
  slotBytes(length: number): number {
    return length > this.#maxShared ? slotOf(length) + BUFFER_OVERHEAD_BYTES : slotOf(length);
  }

  /** A copy of `bytes` in the current chunk of its size (a new one when it is full). */
  copy(bytes: Uint8Array): SlabBytes {
    const n = bytes.length;
    const slot = slotOf(n);
    if (n > this.#maxShared) {
      this.#held += slot;
      this.#liveSlots += slot;
      return { wire: bytes.slice(), chunk: undefined };
    }
    const small = n <= MAX_SMALL;
    let chunk = small ? this.#small : this.#large;
    if (!chunk || chunk.used + slot > chunk.bytes.length) {
      if (chunk && chunk.live === 0) this.#held -= chunk.bytes.length; // no longer current
      const size = small ? CHUNK_BYTES : this.#largeChunkBytes;
      chunk = { bytes: new Uint8Array(size), used: 0, live: 0, liveBytes: 0 };
      if (small) this.#small = chunk;
      else this.#large = chunk;
      this.#held += size;
      this.chunksMade++;
    }
    const wire = chunk.bytes.subarray(chunk.used, chunk.used + n);
    wire.set(bytes);
    chunk.used += slot;
    chunk.live++;
    chunk.liveBytes += slot;
    this.#liveSlots += slot;
    return { wire, chunk };
  }

  /** The cache dropped an entry of `length` bytes whose bytes are in `chunk`. */
  release(chunk: SlabChunk | undefined, length: number): void {
    const slot = slotOf(length);
    this.#liveSlots -= slot;
    if (!chunk) {
      this.#held -= slot;
      return;
    }
    chunk.live--;
    chunk.liveBytes -= slot;
    if (chunk.live === 0 && chunk !== this.#small && chunk !== this.#large) {
      this.#held -= chunk.bytes.length; // garbage now: nothing refers to it
    }
  }

  /** True when an entry in `chunk` should move: the chunk is old and less than a quarter used. */
  sparse(chunk: SlabChunk | undefined): boolean {
    return chunk !== undefined && chunk !== this.#small && chunk !== this.#large &&
      chunk.liveBytes * 4 < chunk.bytes.length;
  }

  /** Bytes of every chunk and own buffer held: what the slab costs in memory. */
  get heldBytes(): number {
    return this.#held;
  }

  /**
   * Bytes held beyond the slots of the entries held: the unused tails of chunks, and the slots
   * of dropped entries in chunks that another entry still pins.
   */
  get slackBytes(): number {
    return this.#held - this.#liveSlots;
  }

  /** Forgets the current chunks (the cache was emptied). */
  reset(): void {
    for (const chunk of [this.#small, this.#large]) {
      if (chunk && chunk.live === 0) this.#held -= chunk.bytes.length;
    }
    this.#small = this.#large = undefined;
  }
}

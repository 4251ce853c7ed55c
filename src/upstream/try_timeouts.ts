/**
 * The timeouts of a PvD's upstream tries. They all have one length (`upstream.timeoutMs`), so
 * the order they are set in is the order they expire: they wait in a ring, in that order, and
 * one timer, armed for the oldest, serves them all. A try that ends in time is crossed out where
 * it stands. A `setTimeout` and `clearTimeout` per try cost ~1.5 KB of garbage each, on the path
 * of every cache miss (bench/README.md, "What moved the figures").
 *
 * @module
 */

/** What a timeout calls: aborts its try. */
export type OnTimeout = () => void;

/** Timeouts of one length, served by one timer. */
export class TryTimeouts {
  /** The length of every timeout, ms. */
  readonly ms: number;
  #now: () => number;
  /** Deadline of each waiting timeout (clock ms), by ticket modulo the ring's size. */
  #at = new Float64Array(256);
  /** What to call, or undefined once crossed out (or called). */
  #call: (OnTimeout | undefined)[] = new Array(256);
  /** Tickets of the oldest waiting timeout and of the next one to be handed out. */
  #head = 0;
  #tail = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;

  /**
   * @param ms the length of every timeout
   * @param now the clock the deadlines are read on (ms)
   */
  constructor(ms: number, now: () => number = performance.now.bind(performance)) {
    this.ms = ms;
    this.#now = now;
  }

  /** Calls `onTimeout` in {@linkcode ms} unless {@linkcode cancel}led; returns its ticket. */
  add(onTimeout: OnTimeout): number {
    if (this.#tail - this.#head === this.#at.length) this.#grow();
    const ticket = this.#tail++;
    const slot = ticket % this.#at.length;
    this.#at[slot] = this.#now() + this.ms;
    this.#call[slot] = onTimeout;
    if (this.#timer === undefined && !this.#closed) {
      this.#timer = setTimeout(() => this.#fire(), this.ms);
    }
    return ticket;
  }

  /** Crosses out the timeout with `ticket` (one already called or crossed out is left alone). */
  cancel(ticket: number): void {
    if (ticket < this.#head || ticket >= this.#tail) return;
    this.#call[ticket % this.#at.length] = undefined;
  }

  /** Timeouts waiting (crossed-out ones not yet passed over included). */
  get size(): number {
    return this.#tail - this.#head;
  }

  /** Stops the timer; no timeout is called any more. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#call.fill(undefined);
    this.#head = this.#tail;
  }

  #fire(): void {
    this.#timer = undefined;
    const now = this.#now();
    while (this.#head < this.#tail) {
      const slot = this.#head % this.#at.length;
      const call = this.#call[slot];
      if (call !== undefined && this.#at[slot]! > now) break;
      this.#call[slot] = undefined;
      this.#head++;
      call?.();
    }
    // The oldest left may be crossed out already: then the next firing just passes over it.
    if (this.#head < this.#tail && !this.#closed) {
      const wait = this.#at[this.#head % this.#at.length]! - now;
      this.#timer = setTimeout(() => this.#fire(), Math.max(1, Math.ceil(wait)));
    }
  }

  /** Doubles the ring, keeping each ticket's entry at ticket modulo the new size. */
  #grow(): void {
    const size = this.#at.length * 2;
    const at = new Float64Array(size);
    const call: (OnTimeout | undefined)[] = new Array(size);
    for (let t = this.#head; t < this.#tail; t++) {
      at[t % size] = this.#at[t % this.#at.length]!;
      call[t % size] = this.#call[t % this.#at.length];
    }
    this.#at = at;
    this.#call = call;
  }
}

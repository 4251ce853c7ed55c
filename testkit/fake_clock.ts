/**
 * A fake clock with timers, for code that takes `now()` and `setTimeout`/`clearTimeout` as
 * parameters (src/pvd/info_scheduler.ts `Timers`). Time moves only when a test calls `advance`;
 * timers due on the way fire in time order, each at its own time, with the promises they start
 * given a chance to settle before the next one.
 *
 * @module
 */

/** Lets pending promise chains run (microtasks, then one real zero-delay timer). */
export async function settle(rounds = 2): Promise<void> {
  for (let i = 0; i < rounds; i++) {
    for (let k = 0; k < 50; k++) await Promise.resolve();
    await new Promise((r) => setTimeout(r, 0));
  }
}

interface Timer {
  id: number;
  at: number;
  fn: () => void;
}

/** A clock for tests: `now()`, `setTimeout`, `clearTimeout`, `advance(ms)`. */
export class FakeClock {
  #now: number;
  #next = 1;
  #timers = new Map<number, Timer>();

  /** Starts at `start` ms since the epoch. */
  constructor(start = Date.parse("2026-01-01T00:00:00Z")) {
    this.#now = start;
  }

  /** Current time, ms since the epoch. */
  now = (): number => this.#now;

  /**
   * Schedules `fn` in `ms` of fake time. Like the real one, a delay over 2^31−1 ms does not
   * hold: it fires at once (so code must chain long delays).
   */
  setTimeout = (fn: () => void, ms: number): unknown => {
    const id = this.#next++;
    const delay = ms > 0x7fffffff ? 1 : Math.max(0, ms);
    this.#timers.set(id, { id, at: this.#now + delay, fn });
    return id;
  };

  /** Cancels a timer. */
  clearTimeout = (handle: unknown): void => {
    this.#timers.delete(handle as number);
  };

  /** Timers still pending. */
  get pending(): number {
    return this.#timers.size;
  }

  /** Moves time forward by `ms`, firing due timers in order (bounded: 100000 timers). */
  async advance(ms: number): Promise<void> {
    const end = this.#now + ms;
    await settle();
    for (let n = 0; n < 100_000; n++) {
      let first: Timer | undefined;
      for (const t of this.#timers.values()) {
        if (t.at <= end && (!first || t.at < first.at || (t.at === first.at && t.id < first.id))) {
          first = t;
        }
      }
      if (!first) break;
      this.#timers.delete(first.id);
      this.#now = Math.max(this.#now, first.at);
      first.fn();
      await settle(1);
    }
    this.#now = end;
    await settle();
  }
}

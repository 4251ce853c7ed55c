/**
 * `PvdResolver.watchPvds()`: a backend's PvD-change subscription as an async iterator, bounded,
 * unsubscribed when the loop is left or the signal aborts.
 *
 * @module
 */

import type { PvdChange } from "../pvd/pvd_info.ts";
import type { PvdBackend } from "./backend.ts";

/** Options of {@linkcode PvdResolver.watchPvds}. */
export interface WatchOptions {
  /** Start with every current PvD as an `added` change. @default false */
  readonly initial?: boolean;
  /** Stop watching. */
  readonly signal?: AbortSignal;
}

/**
 * Changes of `backend`'s PvD set as an async iterator; a consumer that never reads keeps the
 * newest 10000 changes. A subscription that fails or ends on its own throws from `next()`.
 */
export function watchPvdChanges(
  backend: PvdBackend,
  options: WatchOptions = {},
): AsyncIterableIterator<PvdChange> {
  const queue: PvdChange[] = [];
  let failure: unknown;
  let done = false;
  let wake: (() => void) | undefined;
  const notify = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const subscribed = backend.subscribe((changes) => {
    queue.push(...changes);
    // Bounded: a consumer that never reads keeps the newest 10000 changes.
    if (queue.length > 10_000) queue.splice(0, queue.length - 10_000);
    notify();
  }, {
    initial: options.initial ?? false,
    onError: (e) => {
      failure = e;
      notify();
    },
  });
  subscribed.catch((e) => {
    failure = e;
    notify();
  });
  const stop = async () => {
    done = true;
    options.signal?.removeEventListener("abort", onAbort);
    notify();
    (await subscribed.catch(() => undefined))?.();
  };
  const onAbort = () => void stop();
  options.signal?.addEventListener("abort", onAbort, { once: true });
  const iterator: AsyncIterableIterator<PvdChange> = {
    async next(): Promise<IteratorResult<PvdChange>> {
      for (;;) {
        if (queue.length) return { value: queue.shift()!, done: false };
        if (done) return { value: undefined, done: true };
        if (failure !== undefined) {
          await stop();
          throw failure;
        }
        await new Promise<void>((resolve) => wake = resolve);
      }
    },
    async return(): Promise<IteratorResult<PvdChange>> {
      await stop();
      queue.length = 0;
      return { value: undefined, done: true };
    },
    [Symbol.asyncIterator]() {
      return iterator;
    },
  };
  return iterator;
}

/**
 * How the PvD set changes while the stub runs: a reload or a discovery update is one change of
 * the registry's inputs, applied to the {@linkcode PvdSet} one at a time and in order, and told
 * to the `onPvdChange` listeners as {@linkcode PvdEvent}s.
 *
 * @module
 */
import type { PvdEvent, PvdRegistry } from "../pvd/registry.ts";
import type { PvdChanges, PvdSet } from "./pvd_set.ts";

/** Applies registry changes to the PvD set in order and tells listeners what changed. */
export class PvdChangeFeed {
  readonly #pvds: PvdSet;
  readonly #registry: PvdRegistry;
  readonly #listeners = new Set<(events: readonly PvdEvent[]) => void>();
  #applying: Promise<unknown> = Promise.resolve();

  /** Feeds `registry`'s effective PvDs into `pvds`. */
  constructor(pvds: PvdSet, registry: PvdRegistry) {
    this.#pvds = pvds;
    this.#registry = registry;
  }

  /** Runs `change` (on the registry) after the changes before it, then applies the result. */
  apply(change: () => void): Promise<PvdChanges> {
    const run = this.#applying.then(async () => {
      const before = new Map(this.#pvds.pvds.map((p) => [p.id, p]));
      change();
      const result = await this.#pvds.apply(this.#registry.effective());
      const after = new Map(this.#pvds.pvds.map((p) => [p.id, p]));
      const events: PvdEvent[] = [
        ...result.added.map((id) => ({ type: "added" as const, pvd: after.get(id)! })),
        ...result.changed.map((id) => ({ type: "changed" as const, pvd: after.get(id)! })),
        ...result.removed.map((id) => ({ type: "removed" as const, pvd: before.get(id)! })),
      ];
      if (events.length) { for (const l of this.#listeners) l(events); }
      return result;
    });
    this.#applying = run.catch(() => {});
    return run;
  }

  /** Tells `listener` every change from now on; returns the way to stop. */
  subscribe(listener: (events: readonly PvdEvent[]) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Settles when every change asked for so far is applied. */
  settled(): Promise<unknown> {
    return this.#applying;
  }
}

/**
 * The leak guard: the one chokepoint every upstream packet and connection passes before it is
 * sent (DESIGN invariant 2). It knows, per PvD, the servers it may talk to and the local
 * addresses it may talk from, and refuses anything else.
 *
 * @module
 */

/** What the guard needs to know of a PvD. */
export interface GuardedPvd {
  /** PvD id. */
  readonly id: string;
  /** Addresses the PvD's upstream sockets may be bound to. */
  readonly sourceAddresses: readonly string[];
  /** The only destinations the PvD may send to. */
  readonly servers: readonly { readonly address?: string; readonly port: number }[];
}

/** A send the guard refused. Never retried elsewhere: the query fails inside its PvD. */
export class LeakBlockedError extends Error {
  /** The PvD the send was made for. */
  readonly pvd: string;
  /** Creates the error. */
  constructor(pvd: string, message: string) {
    super(message);
    this.name = "LeakBlockedError";
    this.pvd = pvd;
  }
}

/** Options of {@linkcode LeakGuard}. */
export interface LeakGuardOptions {
  /** Called the first time a given (pvd, destination, source) is refused; logs by default. */
  readonly onBlocked?: (pvd: string, destination: string, source: string, why: string) => void;
}

/**
 * Checks that a destination belongs to the routed PvD and that the socket's local address is one
 * of that PvD's source addresses.
 *
 * @example Usage
 * ```ts
 * import { LeakGuard } from "./leak_guard.ts";
 * const guard = new LeakGuard([{ id: "a", sourceAddresses: ["127.0.0.2"], servers: [{ address: "127.0.0.3", port: 53 }] }]);
 * guard.check("a", "127.0.0.3", 53, "127.0.0.2"); // allowed
 * ```
 */
export class LeakGuard {
  #allowed = new Map<string, { servers: Set<string>; sources: Set<string> }>();
  #blocked = new Map<string, number>();
  #learned = new Map<string, Set<string>>();
  #logged = new Set<string>();
  #onBlocked: NonNullable<LeakGuardOptions["onBlocked"]>;

  /** Creates a guard for `pvds`. */
  constructor(pvds: Iterable<GuardedPvd>, options: LeakGuardOptions = {}) {
    this.#onBlocked = options.onBlocked ??
      ((pvd, dst, src, why) =>
        console.error(
          `pvdns: leak guard refused a send for PvD ${pvd} to ${dst} from ${src}: ${why}`,
        ));
    this.update(pvds);
  }

  /**
   * Replaces the set of PvDs (on reload or discovery); counters are kept, and so are addresses
   * learned for PvDs that are still there.
   */
  update(pvds: Iterable<GuardedPvd>): void {
    const next = new Map<string, { servers: Set<string>; sources: Set<string> }>();
    for (const p of pvds) {
      next.set(p.id, {
        servers: new Set(p.servers.filter((s) => s.address).map((s) => `${s.address}|${s.port}`)),
        sources: new Set(p.sourceAddresses),
      });
    }
    for (const [id, learned] of this.#learned) {
      const entry = next.get(id);
      if (!entry) this.#learned.delete(id);
      else for (const k of learned) entry.servers.add(k);
    }
    this.#allowed = next;
  }

  /**
   * Adds a server address a PvD learned through its own Do53 servers (the address of a
   * `https://HOST/PATH` server). Only the PvD's own upstreams call this; it widens nothing else.
   */
  learn(pvd: string, address: string, port: number): void {
    const entry = this.#allowed.get(pvd);
    if (!entry) return;
    const key = `${address}|${port}`;
    entry.servers.add(key);
    let set = this.#learned.get(pvd);
    if (!set) this.#learned.set(pvd, set = new Set());
    set.add(key);
  }

  /**
   * Allows the send or throws.
   *
   * @throws {LeakBlockedError} when the destination or the source is not the PvD's
   */
  check(pvd: string, address: string, port: number, source: string): void {
    const allowed = this.#allowed.get(pvd);
    let why: string | undefined;
    if (!allowed) why = "unknown PvD";
    else if (!allowed.servers.has(`${address}|${port}`)) {
      why = "destination is not a server of this PvD";
    } else if (!allowed.sources.has(source)) why = "source address is not one of this PvD's";
    if (why === undefined) return;
    this.#blocked.set(pvd, (this.#blocked.get(pvd) ?? 0) + 1);
    const dst = address.includes(":") ? `[${address}]:${port}` : `${address}:${port}`;
    const once = `${pvd}|${dst}|${source}`;
    if (!this.#logged.has(once)) {
      this.#logged.add(once);
      this.#onBlocked(pvd, dst, source, why);
    }
    throw new LeakBlockedError(pvd, `leak guard: ${why} (PvD ${pvd}, ${dst} from ${source})`);
  }

  /** Refusals so far, per PvD. */
  get blocked(): ReadonlyMap<string, number> {
    return this.#blocked;
  }
}

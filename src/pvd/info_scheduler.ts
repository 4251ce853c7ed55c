/**
 * When to fetch a PvD's additional information, and what to do with the answer (RFC 8801 §4.1):
 *
 * - only while the last PvD option had H=1; never when H=0 (an H=1→0 change drops what was
 *   fetched);
 * - first fetch as soon as the PvD has a source address and a Do53 server to look its ID up;
 * - a new sequence number drops the information at once ("MUST deprecate … and stop using it")
 *   and refetches after a uniform random delay in [0, 2^(10+Delay)] ms;
 * - after a fetch at A of an object expiring at B, refetch at a uniform random time in
 *   [A + (B−A)/2, B]; at B the information is dropped if no refetch replaced it;
 * - at least 10 s between two fetches of one PvD, at most 5 fetches per network (interface)
 *   in any 10 s: a fetch due earlier waits;
 * - after a `tls`, `http` or `json` failure (an invalid object counts as `json`) the PvD ID is
 *   never fetched again during the attachment, and after 10 such failures nothing is fetched on
 *   that network; `dns`, `network` and `no-source` failures are retried after 10 s, 20 s, 40 s …
 *   (at most 10 min) and count for neither rule;
 * - the attachment of a network ends when its last RA-learned PvD is gone or the interface
 *   disappears ({@linkcode InfoScheduler.endAttachment}); its failure memory goes with it.
 *
 * Every clock, timer, random number and the fetch itself are injected.
 *
 * @module
 */

import type { Cidr, PvdAdditionalInfo, ServerConfig } from "../config/types.ts";
import {
  type FetchFailure,
  type InfoFetcher,
  PERMANENT_FAILURES,
  validateAdditionalInfo,
} from "./additional_info.ts";

/** Timer functions (the global ones by default; a fake clock in tests). */
export interface Timers {
  /** Returns an opaque handle for `clearTimeout`. */
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** The global timers. */
export const realTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as number),
};

/** Minimum time between two fetches of one PvD on one network (RECOMMENDED value). */
export const MIN_FETCH_INTERVAL_MS = 10_000;
/** At most this many fetches per network … */
export const MAX_FETCHES_PER_WINDOW = 5;
/** … in this window. */
export const FETCH_WINDOW_MS = 10_000;
/** After this many tls/http/json failures, nothing more is fetched on the network. */
export const MAX_FAILURES = 10;
/** The longest delay setTimeout holds. */
const MAX_TIMER_MS = 0x7fffffff;

/** What the scheduler is told of an explicit PvD after every change. */
export interface InfoSubject {
  readonly interface: string;
  /** PvD ID, lower case, no trailing dot. */
  readonly id: string;
  readonly h: boolean;
  readonly delay: number;
  readonly seq: number;
  /** Global source addresses to fetch from, best first. */
  readonly fetchSources: readonly string[];
  /** All source addresses (link-local ones too, for link-local servers). */
  readonly sourceAddresses: readonly string[];
  /** The PvD's Do53 servers. */
  readonly servers: readonly ServerConfig[];
  /** The PvD's prefixes (from PIOs), which the object must cover. */
  readonly prefixes: readonly Cidr[];
}

/** Options of {@linkcode InfoScheduler}. */
export interface InfoSchedulerOptions {
  readonly fetcher: InfoFetcher;
  /** Called when the information of some PvD appeared, changed or was dropped. */
  readonly onChange: () => void;
  readonly now: () => number;
  readonly timers: Timers;
  /** Uniform in [0, 1). */
  readonly random: () => number;
  readonly log: (line: string) => void;
}

interface PvdState {
  subject: InfoSubject;
  info?: PvdAdditionalInfo;
  /** When `info` stops being usable (ms). */
  infoExpiresAt?: number;
  expiryTimer?: unknown;
  dueTimer?: unknown;
  dueAt?: number;
  lastFetchAt?: number;
  inFlight?: AbortController;
  /** Retries after dns/network/no-source failures in a row. */
  transient: number;
  /** Due, but waiting for a source address or a server. */
  waiting: boolean;
}

interface NetworkState {
  /** PvD IDs that failed with tls/http/json: never fetched again this attachment. */
  readonly failed: Set<string>;
  failures: number;
  /** Start times of recent fetches. */
  recent: number[];
  gaveUp: boolean;
}

/** Schedules and runs the `/.well-known/pvd` fetches of every explicit RA PvD. */
export class InfoScheduler {
  #o: InfoSchedulerOptions;
  #pvds = new Map<string, PvdState>();
  #networks = new Map<string, NetworkState>();
  #closed = false;
  #running = new Set<Promise<void>>();

  /** Creates the scheduler. */
  constructor(options: InfoSchedulerOptions) {
    this.#o = options;
  }

  /** The usable information of a PvD, if any. */
  info(iface: string, id: string): PvdAdditionalInfo | undefined {
    return this.#pvds.get(`${iface}|${id}`)?.info;
  }

  /** The failure memory of a network (for tests and `pvdns pvds`). */
  network(iface: string): { failed: readonly string[]; failures: number; gaveUp: boolean } {
    const n = this.#net(iface);
    return { failed: [...n.failed], failures: n.failures, gaveUp: n.gaveUp };
  }

  #net(iface: string): NetworkState {
    let n = this.#networks.get(iface);
    if (!n) {
      n = { failed: new Set(), failures: 0, recent: [], gaveUp: false };
      this.#networks.set(iface, n);
    }
    return n;
  }

  /** Tells the scheduler the current state of an explicit PvD (after every RA or change). */
  update(subject: InfoSubject): void {
    if (this.#closed) return;
    const key = `${subject.interface}|${subject.id}`;
    let st = this.#pvds.get(key);
    if (!st) {
      st = { subject, transient: 0, waiting: false };
      this.#pvds.set(key, st);
      if (subject.h) this.#schedule(st, this.#o.now());
      return;
    }
    const before = st.subject;
    st.subject = subject;
    if (!subject.h) {
      if (before.h) {
        this.#cancel(st);
        this.#drop(st, "H flag cleared");
      }
      return;
    }
    if (!before.h) {
      this.#schedule(st, this.#o.now());
    } else if (subject.seq !== before.seq) {
      this.#cancel(st);
      this.#drop(st, `sequence number ${before.seq} → ${subject.seq}`);
      const delay = Math.floor(this.#o.random() * 2 ** (10 + subject.delay));
      this.#schedule(st, this.#o.now() + delay);
    } else if (st.waiting) {
      st.waiting = false;
      this.#schedule(st, this.#o.now());
    }
  }

  /** Forgets a PvD that is gone. */
  remove(iface: string, id: string): void {
    const st = this.#pvds.get(`${iface}|${id}`);
    if (!st) return;
    this.#cancel(st);
    if (st.expiryTimer !== undefined) this.#o.timers.clearTimeout(st.expiryTimer);
    this.#pvds.delete(`${iface}|${id}`);
  }

  /** The network attachment of `iface` ended: forget its PvDs and its failure memory. */
  endAttachment(iface: string): void {
    for (const [key, st] of this.#pvds) {
      if (st.subject.interface === iface) this.remove(iface, key.slice(iface.length + 1));
    }
    this.#networks.delete(iface);
  }

  /** Stops every timer and aborts fetches in flight; waits for them to settle. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const st of this.#pvds.values()) {
      this.#cancel(st);
      if (st.expiryTimer !== undefined) this.#o.timers.clearTimeout(st.expiryTimer);
    }
    await Promise.allSettled([...this.#running]);
  }

  #cancel(st: PvdState): void {
    if (st.dueTimer !== undefined) this.#o.timers.clearTimeout(st.dueTimer);
    st.dueTimer = st.dueAt = undefined;
    st.inFlight?.abort();
    st.inFlight = undefined;
    st.waiting = false;
  }

  #drop(st: PvdState, why: string): void {
    if (st.expiryTimer !== undefined) this.#o.timers.clearTimeout(st.expiryTimer);
    st.expiryTimer = undefined;
    if (!st.info) return;
    st.info = st.infoExpiresAt = undefined;
    this.#o.log(`PvD ${st.subject.id}: additional information dropped (${why})`);
    this.#o.onChange();
  }

  /** Runs `fn` at time `at`; delays past 2^31−1 ms (what setTimeout holds) are chained. */
  #at(at: number, fn: () => void, set: (handle: unknown) => void): void {
    const delay = Math.max(0, at - this.#o.now());
    set(this.#o.timers.setTimeout(() => {
      if (this.#o.now() < at) this.#at(at, fn, set);
      else fn();
    }, Math.min(delay, MAX_TIMER_MS)));
  }

  #schedule(st: PvdState, at: number): void {
    if (st.dueTimer !== undefined) this.#o.timers.clearTimeout(st.dueTimer);
    st.dueAt = at;
    this.#at(at, () => {
      st.dueTimer = undefined;
      this.#due(st);
    }, (h) => st.dueTimer = h);
  }

  /** A fetch is due: check the rules, then fetch or postpone. */
  #due(st: PvdState): void {
    if (this.#closed || st.inFlight) return;
    const { subject } = st;
    const net = this.#net(subject.interface);
    if (!subject.h || net.gaveUp || net.failed.has(subject.id)) return;
    if (subject.fetchSources.length === 0 || !subject.servers.some((s) => s.protocol === "udp")) {
      st.waiting = true; // update() reschedules when an address or a server appears
      return;
    }
    const now = this.#o.now();
    net.recent = net.recent.filter((t) => t > now - FETCH_WINDOW_MS);
    let earliest = st.lastFetchAt === undefined ? now : st.lastFetchAt + MIN_FETCH_INTERVAL_MS;
    if (net.recent.length >= MAX_FETCHES_PER_WINDOW) {
      earliest = Math.max(
        earliest,
        net.recent[net.recent.length - MAX_FETCHES_PER_WINDOW]! +
          FETCH_WINDOW_MS,
      );
    }
    if (earliest > now) {
      this.#schedule(st, earliest);
      return;
    }
    st.lastFetchAt = now;
    net.recent.push(now);
    const run = this.#fetch(st, net);
    this.#running.add(run);
    run.finally(() => this.#running.delete(run));
  }

  async #fetch(st: PvdState, net: NetworkState): Promise<void> {
    const subject = st.subject;
    const ac = new AbortController();
    st.inFlight = ac;
    this.#o.log(`PvD ${subject.id}: fetching https://${subject.id}/.well-known/pvd`);
    let outcome;
    try {
      outcome = await this.#o.fetcher({
        pvdId: subject.id,
        sourceAddresses: subject.fetchSources,
        allSourceAddresses: subject.sourceAddresses,
        servers: subject.servers,
        signal: ac.signal,
      });
    } catch (e) {
      outcome = { ok: false as const, kind: "network" as const, message: (e as Error).message };
    }
    if (st.inFlight !== ac) return; // cancelled (sequence change, removal, close)
    st.inFlight = undefined;
    if (this.#closed || ac.signal.aborted) return;
    const now = this.#o.now();
    if (!outcome.ok) return this.#failed(st, net, outcome.kind, outcome.message);
    const v = validateAdditionalInfo(outcome.document, {
      pvdId: subject.id,
      prefixes: st.subject.prefixes,
      now,
    });
    if (!v.ok) return this.#failed(st, net, "json", `invalid object: ${v.reason}`);
    st.transient = 0;
    const expiresAt = Date.parse(v.info.expires);
    st.info = { ...v.info, fetchedAt: new Date(now).toISOString() };
    st.infoExpiresAt = expiresAt;
    this.#o.log(
      `PvD ${subject.id}: additional information from ${outcome.url} (source ${outcome.source})`,
    );
    if (st.expiryTimer !== undefined) this.#o.timers.clearTimeout(st.expiryTimer);
    this.#at(expiresAt, () => {
      st.expiryTimer = undefined;
      this.#drop(st, "expired");
    }, (h) => st.expiryTimer = h);
    // Refresh at a uniform random time in [A + (B−A)/2, B].
    const half = (expiresAt - now) / 2;
    this.#schedule(st, now + half + this.#o.random() * half);
    this.#o.onChange();
  }

  #failed(st: PvdState, net: NetworkState, kind: FetchFailure, message: string): void {
    const id = st.subject.id;
    if (PERMANENT_FAILURES.has(kind)) {
      net.failed.add(id);
      net.failures++;
      this.#o.log(
        `PvD ${id}: additional information failed (${kind}: ${message}); not fetched again ` +
          `on ${st.subject.interface} during this attachment`,
      );
      if (net.failures >= MAX_FAILURES && !net.gaveUp) {
        net.gaveUp = true;
        this.#o.log(
          `${net.failures} failed fetches on ${st.subject.interface}: no more PvD additional ` +
            `information is fetched there during this attachment`,
        );
      }
      this.#drop(st, kind);
      return;
    }
    st.transient++;
    const retry = Math.min(MIN_FETCH_INTERVAL_MS * 2 ** (st.transient - 1), 600_000);
    this.#o.log(
      `PvD ${id}: additional information not fetched (${kind}: ${message}); retry in ` +
        `${retry / 1000} s`,
    );
    this.#schedule(st, this.#o.now() + retry);
  }
}

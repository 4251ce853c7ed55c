/**
 * The running set of PvDs: for each, its cache and its upstream servers, plus the router and the
 * leak guard built from all of them. {@linkcode PvdSet.apply} moves to a new set of PvDs and
 * touches only what changed: an unchanged PvD keeps its cache and connections, a changed one
 * starts with an empty cache (user pain: stale split-DNS answers after a network change,
 * systemd#9196), a vanished one is closed and its in-flight queries fail with SERVFAIL.
 *
 * @module
 */

import type { LeakGuard } from "../policy/leak_guard.ts";
import { checkRoutes } from "../policy/route_check.ts";
import { Router } from "../policy/router.ts";
import type { IpRunner } from "../host/ip_command.ts";
import { CacheBudget, DEFAULT_MAX_TOTAL_BYTES, PvdCache } from "../cache/cache.ts";
import type { Config, PvdConfig, ServerConfig } from "../config/types.ts";
import { PvdUpstreams, type UpstreamSlots } from "../upstream/pool.ts";

/** What changed in one {@linkcode PvdSet.apply}. */
export interface PvdChanges {
  /** PvDs that are new. */
  readonly added: readonly string[];
  /** PvDs whose description changed (their cache was emptied). */
  readonly changed: readonly string[];
  /** PvDs that are gone. */
  readonly removed: readonly string[];
}

/** Options of {@linkcode PvdSet}. */
export interface PvdSetOptions {
  readonly guard: LeakGuard;
  readonly now: () => number;
  readonly log: (line: string) => void;
  /** Runs `ip -j …` for strictRoutes checks. */
  readonly runIp?: IpRunner | undefined;
  /** How often strictRoutes PvDs are checked again, ms. @default 10000 */
  readonly routeCheckMs?: number | undefined;
  /** Told of every upstream exchange (metrics). */
  readonly onExchange?: (
    pvd: string,
    server: ServerConfig,
    seconds: number,
    reason?: string,
  ) => void;
  /** Told when a bound is reached (`upstream_queries`, `cache_entry_bytes`). */
  readonly onLimit?: (limit: string) => void;
  /**
   * Told of each datagram on a PvD's upstream UDP query sockets that answered nothing;
   * `burstPorts` > 0 when a spoofing warning is due (`TransportOptions.onUnexpectedAnswer`).
   */
  readonly onUnexpectedAnswer?: (pvd: string, server: ServerConfig, burstPorts: number) => void;
  /** A PvD's encryption events (`PvdUpstreamsOptions.onEncryption`). */
  readonly onEncryption?: (pvd: string, event: "fallback" | "plain" | "encrypted") => void;
  /** A rebinding check dropped records from an answer of a PvD. */
  readonly onRebindBlocked?: (pvd: string, records: number) => void;
}

/** The per-PvD runtime state, switched as a whole on reload or discovery. */
export class PvdSet {
  /** Read by the pipeline on every query. */
  readonly state: {
    router: Router;
    caches: Map<string, PvdCache>;
    upstreams: Map<string, PvdUpstreams>;
  } = {
    router: new Router({ pvds: [] }),
    caches: new Map(),
    upstreams: new Map(),
  };
  #pvds = new Map<string, { json: string; config: PvdConfig }>();
  #optionsKey = "";
  /** Entries and bytes over every PvD's cache (`cache.maxTotalEntries`, `cache.maxTotalBytes`). */
  readonly budget: CacheBudget = new CacheBudget({ caches: () => this.state.caches.values() });
  /** Upstream exchanges at once over every PvD, bounded by `limits.maxUpstreamQueries`. */
  readonly slots: UpstreamSlots & { max: number };
  #options: PvdSetOptions;
  #config: Config | undefined;
  #routeTimer: ReturnType<typeof setInterval> | undefined;
  #verdicts = new Map<string, string>();
  #retiring = new Map<ReturnType<typeof setTimeout>, PvdUpstreams>();

  /** Creates an empty set; call {@linkcode PvdSet.apply}. */
  constructor(options: PvdSetOptions) {
    this.#options = options;
    this.slots = { active: 0, max: Infinity, onFull: () => options.onLimit?.("upstream_queries") };
  }

  /** The PvDs in force. */
  get pvds(): readonly PvdConfig[] {
    return [...this.#pvds.values()].map((p) => p.config);
  }

  /**
   * Moves to the PvDs and rules of `config`. Queries routed after this call see the new set.
   *
   * @returns which PvDs were added, changed (cache flushed) and removed
   */
  async apply(config: Config): Promise<PvdChanges> {
    const optionsKey = JSON.stringify([config.cache, config.upstream, config.caFile ?? null]);
    const everything = optionsKey !== this.#optionsKey; // cache or timing options: rebuild all
    this.budget.maxEntries = config.cache.maxTotalEntries;
    this.budget.maxBytes = config.cache.maxTotalBytes ?? DEFAULT_MAX_TOTAL_BYTES;
    this.slots.max = config.limits.maxUpstreamQueries;
    const staleMs = config.cache.serveStale ? config.cache.staleMaxAge * 1000 : 0;
    const caches = new Map<string, PvdCache>();
    const upstreams = new Map<string, PvdUpstreams>();
    const next = new Map<string, { json: string; config: PvdConfig }>();
    const added: string[] = [], changed: string[] = [];
    const retire: PvdUpstreams[] = [];
    const { guard, now } = this.#options;
    for (const p of config.pvds) {
      const json = JSON.stringify(p);
      const old = this.#pvds.get(p.id);
      next.set(p.id, { json, config: p });
      const keep = old && !everything && old.json === json;
      if (keep) {
        caches.set(p.id, this.state.caches.get(p.id)!);
        upstreams.set(p.id, this.state.upstreams.get(p.id)!);
        continue;
      }
      (old ? changed : added).push(p.id);
      caches.set(
        p.id,
        new PvdCache({
          maxEntries: config.cache.maxEntries,
          maxBytes: config.cache.maxBytes,
          maxEntryBytes: config.cache.maxEntryBytes,
          budget: this.budget,
          staleMs,
          onLimit: this.#options.onLimit,
        }),
      );
      const onExchange = this.#options.onExchange;
      const unexpected = this.#options.onUnexpectedAnswer;
      const { onEncryption: encryption, onRebindBlocked: rebind } = this.#options;
      upstreams.set(
        p.id,
        new PvdUpstreams(p, {
          upstream: config.upstream,
          cache: config.cache,
          guard,
          now,
          caFile: config.caFile,
          slots: this.slots,
          ...(onExchange ? { onExchange: (s, sec, why) => onExchange(p.id, s, sec, why) } : {}),
          ...(unexpected ? { onUnexpectedAnswer: (s, burst) => unexpected(p.id, s, burst) } : {}),
          ...(encryption ? { onEncryption: (event) => encryption(p.id, event) } : {}),
          ...(this.#options.onLimit ? { onLimit: this.#options.onLimit } : {}),
          ...(rebind ? { onRebindBlocked: (n) => rebind(p.id, n) } : {}),
        }),
      );
      const previous = this.state.upstreams.get(p.id);
      if (previous) retire.push(previous);
    }
    const removed = [...this.#pvds.keys()].filter((id) => !next.has(id));
    const vanished = removed.map((id) => this.state.upstreams.get(id)!);
    // The guard learns the new servers before anything can use them.
    guard.update(config.pvds);
    this.state.router = new Router({ pvds: config.pvds, rules: config.rules });
    this.state.caches = caches;
    this.state.upstreams = upstreams;
    this.#pvds = next;
    this.#optionsKey = optionsKey;
    this.#config = config;
    // A vanished PvD's in-flight queries end now, as SERVFAIL; a changed one's old servers get
    // the query deadline to finish what they were asked.
    for (const u of vanished) await u.close();
    for (const u of retire) {
      const t = setTimeout(() => {
        this.#retiring.delete(t);
        u.close();
      }, config.upstream.deadlineMs);
      this.#retiring.set(t, u);
    }
    await this.#scheduleRouteChecks();
    return { added, changed, removed };
  }

  async #scheduleRouteChecks(): Promise<void> {
    clearInterval(this.#routeTimer);
    this.#routeTimer = undefined;
    if (!this.pvds.some((p) => p.strictRoutes)) return;
    await this.checkRoutesNow();
    this.#routeTimer = setInterval(
      () => this.checkRoutesNow().catch((e) => this.#options.log(`pvdns: route check: ${e}`)),
      this.#options.routeCheckMs ?? 10_000,
    );
  }

  /** strictRoutes: asks the kernel about every server of such PvDs; fails closed on a miss. */
  async checkRoutesNow(): Promise<void> {
    const log = this.#options.log;
    for (const p of this.pvds.filter((p) => p.strictRoutes)) {
      for (const r of await checkRoutes(p, this.#options.runIp)) {
        this.state.upstreams.get(p.id)?.setBlocked(r.server, r.ok ? undefined : r.detail);
        const key = `${p.id} ${r.server}`;
        const verdict = r.ok ? "ok" : r.detail;
        if (this.#verdicts.get(key) === verdict) continue;
        this.#verdicts.set(key, verdict);
        log(
          r.ok
            ? `pvdns: PvD ${p.id}: route ok: ${r.detail}`
            : `pvdns: PvD ${p.id}: strictRoutes: not using ${r.detail}`,
        );
      }
    }
  }

  /** The config last applied. */
  get config(): Config | undefined {
    return this.#config;
  }

  /** Closes every PvD's upstreams and stops the route checks. */
  async close(): Promise<void> {
    clearInterval(this.#routeTimer);
    for (const [t, u] of this.#retiring) {
      clearTimeout(t);
      await u.close();
    }
    this.#retiring.clear();
    for (const u of this.state.upstreams.values()) await u.close();
  }
}

/**
 * The resolver's Prometheus metrics, on an injected prom-client `Registry`.
 *
 * The query path only bumps plain numbers (a prom-client `labels().inc()` costs about 0.3 µs,
 * several per query would be a tenth of the hot path); the values are handed to prom-client
 * when Prometheus scrapes. Labels are bounded: PvD id, protocol, rcode, source, and the query
 * type folded into a fixed set — never the query name.
 *
 * @module
 */

import { collectDefaultMetrics, Counter, Gauge, type Registry } from "prom-client";
import type { PvdConfig, ZoneClaim } from "../config/types.ts";
import type { AnswerSource } from "../dns/response.ts";
import { QUERY_TYPES, Type } from "../dns/wire.ts";

/** The query types counted by name (the config's), by number; every other type is "other". */
const QTYPES: Record<number, string> = Object.fromEntries(QUERY_TYPES.map((t) => [Type[t], t]));
const RCODES = ["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED"];
/** Query type → its slot in a per-protocol count array; the last slot is "other". */
const QTYPE_NAMES = [...Object.values(QTYPES), "other"];
const QTYPE_SLOT = new Uint8Array(65536).fill(QTYPE_NAMES.length - 1);
Object.keys(QTYPES).forEach((t, i) => QTYPE_SLOT[Number(t)] = i);
const RCODE_NAMES = [...RCODES, "other"];
/** Label objects made once per source, so that observing a duration allocates nothing. */
const SOURCE_LABELS = new Map<string, Record<string, string>>();
/** Upper bounds of the request duration buckets, seconds. */
const BUCKETS = [
  0.0001,
  0.00025,
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
];

/** What the metrics read at scrape time from the running stub. */
export interface MetricSources {
  readonly pvds: () => readonly PvdConfig[];
  readonly cacheEntries: () => ReadonlyMap<string, number>;
  /** Bytes each PvD's cache holds, as it counts them against `cache.maxBytes`. */
  readonly cacheBytes?: () => ReadonlyMap<string, number>;
  readonly leakBlocked: () => ReadonlyMap<string, number>;
  /** Keyed `from->to`. */
  readonly fallbacks: () => ReadonlyMap<string, number>;
  /** The verdict on every zone claim of the PvDs in force (the router's). */
  readonly zoneClaims?: () => readonly ZoneClaim[];
}

/** A labelled histogram kept as plain arrays and exported at scrape time. */
class FastHistogram {
  /** Per label set: a count per bucket, the last one for values above every bound (+Inf). */
  #series = new Map<string, { labels: Record<string, string>; counts: number[]; sum: number }>();
  readonly name: string;
  readonly help: string;
  readonly buckets: readonly number[];

  constructor(name: string, help: string, buckets: readonly number[]) {
    this.name = name;
    this.help = help;
    this.buckets = buckets;
  }

  observe(key: string, labels: Record<string, string>, seconds: number): void {
    let s = this.#series.get(key);
    if (!s) {
      s = { labels, counts: new Array(this.buckets.length + 1).fill(0), sum: 0 };
      this.#series.set(key, s);
    }
    let i = 0;
    while (i < this.buckets.length && seconds > this.buckets[i]!) i++;
    s.counts[i]!++;
    s.sum += seconds;
  }

  /** The prom-client metric object (`get()` is what the registry calls on a scrape). */
  metric() {
    return {
      name: this.name,
      help: this.help,
      type: "histogram",
      aggregator: "sum",
      reset: () => this.#series.clear(),
      get: () => {
        const values: {
          labels: Record<string, string | number>;
          value: number;
          metricName: string;
        }[] = [];
        for (const s of this.#series.values()) {
          let cumulative = 0;
          this.buckets.forEach((le, i) => {
            cumulative += s.counts[i]!;
            values.push({
              labels: { ...s.labels, le },
              value: cumulative,
              metricName: `${this.name}_bucket`,
            });
          });
          const total = cumulative + s.counts[this.buckets.length]!;
          values.push({
            labels: { ...s.labels, le: "+Inf" },
            value: total,
            metricName: `${this.name}_bucket`,
          });
          values.push({ labels: s.labels, value: s.sum, metricName: `${this.name}_sum` });
          values.push({ labels: s.labels, value: total, metricName: `${this.name}_count` });
        }
        return Promise.resolve({
          name: this.name,
          help: this.help,
          type: "histogram",
          values,
          aggregator: "sum",
        });
      },
    };
  }
}

/** Counts kept in a Map by a joined key, exported as a prom-client counter at scrape time. */
function scrapedCounter(
  registry: Registry,
  name: string,
  help: string,
  labelNames: string[],
  read: () => Iterable<[string[], number]>,
): void {
  new Counter({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      this.reset();
      for (const [values, n] of read()) {
        this.inc(Object.fromEntries(labelNames.map((l, i) => [l, values[i]!])), n);
      }
    },
  });
}

function split(counts: Map<string, number>): Iterable<[string[], number]> {
  return [...counts].map(([k, n]) => [k.split("|"), n] as [string[], number]);
}

/**
 * The resolver's metrics. Create one per registry.
 *
 * @example Usage
 * ```ts ignore
 * const metrics = new ResolverMetrics(new Registry(), sources, "0.1.0");
 * metrics.request("udp", 1);
 * ```
 */
export class ResolverMetrics {
  /** Per protocol: a count per query-type slot (QTYPE_SLOT). */
  #requests = new Map<string, Float64Array>();
  /** Per PvD ("none" for local answers), per source: a count per rcode (the last: other). */
  #responses = new Map<string, Map<string, Float64Array>>();
  #hits = new Map<string, number>();
  #misses = new Map<string, number>();
  #upstreamErrors = new Map<string, number>();
  /** Per PvD: datagrams on its upstream query sockets that answered nothing. */
  #unexpectedAnswers = new Map<string, number>();
  #encryptedFallbacks = new Map<string, number>();
  #rebindBlocked = new Map<string, number>();
  #reloads = new Map<string, number>();
  #limits = new Map<string, number>();
  #duration = new FastHistogram(
    "pvdns_dns_request_duration_seconds",
    "Time from a query's arrival to its answer; answers made at once (cache, local) count in the first bucket",
    BUCKETS,
  );
  #upstreamDuration = new FastHistogram(
    "pvdns_upstream_request_duration_seconds",
    "Round-trip time of upstream exchanges, per PvD, server and transport",
    BUCKETS,
  );

  /** Registers every pvdns metric (and the process metrics) on `registry`. */
  constructor(registry: Registry, sources: MetricSources, version: string) {
    collectDefaultMetrics({ register: registry, prefix: "pvdns_" });
    // prom-client names some Node gauges `*_total`, which Prometheus's linter rejects.
    for (const m of registry.getMetricsAsArray()) {
      const { name, type } = m as unknown as { name: string; type: string };
      if (name.endsWith("_total") && type !== "counter") registry.removeSingleMetric(name);
    }
    if (!procReadable()) {
      // Under the start task's narrow permissions prom-client cannot read /proc/self and would
      // report 0 for these; RSS comes from Deno instead, the others are left out.
      for (
        const m of [
          "resident_memory_bytes",
          "virtual_memory_bytes",
          "heap_bytes",
          "open_fds",
          "max_fds",
        ]
      ) {
        registry.removeSingleMetric(`pvdns_process_${m}`);
      }
      new Gauge({
        name: "pvdns_process_resident_memory_bytes",
        help: "Resident memory size in bytes.",
        registers: [registry],
        collect() {
          this.set(Deno.memoryUsage().rss);
        },
      });
    }
    scrapedCounter(
      registry,
      "pvdns_dns_requests_total",
      "DNS queries received",
      ["proto", "type"],
      () =>
        [...this.#requests].flatMap(([proto, counts]) =>
          [...counts].flatMap((n, i) =>
            n ? [[[proto, QTYPE_NAMES[i]!], n] as [string[], number]] : []
          )
        ),
    );
    scrapedCounter(
      registry,
      "pvdns_dns_responses_total",
      "DNS responses sent, by the PvD that answered (none for local answers), rcode and source",
      ["pvd", "rcode", "source"],
      () =>
        [...this.#responses].flatMap(([pvd, bySource]) =>
          [...bySource].flatMap(([source, counts]) =>
            [...counts].flatMap((n, i) =>
              n ? [[[pvd, RCODE_NAMES[i]!, source], n] as [string[], number]] : []
            )
          )
        ),
    );
    scrapedCounter(
      registry,
      "pvdns_cache_hits_total",
      "Answers served from a PvD's cache",
      ["pvd"],
      () => split(this.#hits),
    );
    scrapedCounter(registry, "pvdns_cache_misses_total", "Cache lookups that found nothing", [
      "pvd",
    ], () => split(this.#misses));
    scrapedCounter(
      registry,
      "pvdns_upstream_errors_total",
      "Failed upstream exchanges, by PvD, server and reason",
      ["pvd", "server", "reason"],
      () => split(this.#upstreamErrors),
    );
    scrapedCounter(
      registry,
      "pvdns_upstream_unexpected_answers_total",
      "Datagrams on upstream UDP query sockets that answered no query (another sender, ID or " +
        "question): a sign of forged answers",
      ["pvd"],
      () => split(this.#unexpectedAnswers),
    );
    scrapedCounter(
      registry,
      "pvdns_encrypted_fallback_total",
      'Queries of an encryption "prefer" PvD asked over Do53 because every encrypted server was down',
      ["pvd"],
      () => split(this.#encryptedFallbacks),
    );
    scrapedCounter(
      registry,
      "pvdns_rebind_blocked_total",
      "A/AAAA records in private ranges dropped from answers for names outside the PvD's zones",
      ["pvd"],
      () => split(this.#rebindBlocked),
    );
    scrapedCounter(
      registry,
      "pvdns_leak_blocked_total",
      "Upstream sends refused by the leak guard",
      ["pvd"],
      () => [...sources.leakBlocked()].map(([pvd, n]) => [[pvd], n] as [string[], number]),
    );
    scrapedCounter(
      registry,
      "pvdns_cross_pvd_fallback_total",
      "Queries a rule's explicit fallback sent to a second PvD",
      ["from", "to"],
      () => [...sources.fallbacks()].map(([k, n]) => [k.split("->"), n] as [string[], number]),
    );
    scrapedCounter(
      registry,
      "pvdns_reload_total",
      "Config reloads, by result",
      ["result"],
      () => split(this.#reloads),
    );
    scrapedCounter(
      registry,
      "pvdns_limit_reached_total",
      "Queries or connections dropped, refused or slowed because a bound was reached, by bound",
      ["limit"],
      () => split(this.#limits),
    );
    new Gauge({
      name: "pvdns_cache_entries",
      help: "Entries in each PvD's cache",
      labelNames: ["pvd"],
      registers: [registry],
      collect() {
        this.reset();
        for (const [pvd, n] of sources.cacheEntries()) this.set({ pvd }, n);
      },
    });
    new Gauge({
      name: "pvdns_cache_bytes",
      help: "Bytes held by each PvD's cache, as counted against cache.maxBytes (entries, their " +
        "answers' bytes, and chunk bytes that survivors pin)",
      labelNames: ["pvd"],
      registers: [registry],
      collect() {
        this.reset();
        for (const [pvd, n] of sources.cacheBytes?.() ?? []) this.set({ pvd }, n);
      },
    });
    new Gauge({
      name: "pvdns_pvd_info",
      help: "The PvDs in force (value 1)",
      labelNames: ["pvd", "origin", "implicit"],
      registers: [registry],
      collect() {
        this.reset();
        for (const p of sources.pvds()) {
          this.set({ pvd: p.id, origin: p.origin, implicit: String(p.implicit) }, 1);
        }
      },
    });
    new Gauge({
      name: "pvdns_zone_claims",
      help: "Zones the PvDs in force claim, by where the claim came from and its verdict " +
        "(accepted, or refused: public_suffix, full_tunnel)",
      labelNames: ["pvd", "origin", "verdict"],
      registers: [registry],
      collect() {
        this.reset();
        for (const c of sources.zoneClaims?.() ?? []) {
          const verdict = c.accepted ? "accepted" : c.reason.replace("-", "_");
          this.inc({ pvd: c.pvd, origin: c.source, verdict });
        }
      },
    });
    new Gauge({
      name: "pvdns_build_info",
      help: "pvdns version and the Deno it runs on (value 1)",
      labelNames: ["version", "deno"],
      registers: [registry],
    }).set({ version, deno: Deno.version.deno }, 1);
    registry.registerMetric(this.#duration.metric() as never);
    registry.registerMetric(this.#upstreamDuration.metric() as never);
  }

  // The two calls below run for every query: they index arrays and Maps by values they are
  // given, and build no string or object (garbage on the hot path is paid in GC pauses).

  /** A query arrived. */
  request(proto: string, qtype: number): void {
    let counts = this.#requests.get(proto);
    if (!counts) this.#requests.set(proto, counts = new Float64Array(QTYPE_NAMES.length));
    counts[qtype >= 0 ? QTYPE_SLOT[qtype & 0xffff]! : QTYPE_NAMES.length - 1]!++;
  }

  /** A response left; `seconds` undefined means it was made at once. */
  response(pvd: string | undefined, rcode: number, source: AnswerSource, seconds?: number): void {
    const key = pvd ?? "none";
    let bySource = this.#responses.get(key);
    if (!bySource) this.#responses.set(key, bySource = new Map());
    let counts = bySource.get(source);
    if (!counts) bySource.set(source, counts = new Float64Array(RCODE_NAMES.length));
    counts[rcode >= 0 && rcode < RCODES.length ? rcode : RCODES.length]!++;
    let labels = SOURCE_LABELS.get(source);
    if (!labels) SOURCE_LABELS.set(source, labels = { source });
    this.#duration.observe(source, labels, seconds ?? 0);
  }

  /** A cache lookup in `pvd`. */
  cache(pvd: string, hit: boolean): void {
    bump(hit ? this.#hits : this.#misses, pvd);
  }

  /** One upstream exchange; `reason` set when it failed. */
  upstream(pvd: string, server: string, transport: string, seconds: number, reason?: string): void {
    if (reason !== undefined) bump(this.#upstreamErrors, `${pvd}|${server}|${reason}`);
    else {
      const key = `${pvd}|${server}|${transport}`;
      this.#upstreamDuration.observe(key, { pvd, server, transport }, seconds);
    }
  }

  /** A query of `pvd` (encryption `prefer`) went to Do53: every encrypted server was down. */
  encryptedFallback(pvd: string): void {
    bump(this.#encryptedFallbacks, pvd);
  }

  /** A rebinding check dropped `records` A/AAAA records from an answer of `pvd`. */
  rebindBlocked(pvd: string, records: number): void {
    bump(this.#rebindBlocked, pvd, records);
  }

  /** A datagram reached one of `pvd`'s upstream UDP query sockets and answered nothing. */
  unexpectedAnswer(pvd: string): void {
    bump(this.#unexpectedAnswers, pvd);
  }

  /**
   * A bound was reached: `in_flight`, `client_in_flight`, `upstream_queries`, `tcp_connections`,
   * `tcp_pipeline`, `tcp_read_timeout`, `acl` (refused), `rate_limit` (dropped or slipped),
   * `cache_entry_bytes` (an answer over `cache.maxEntryBytes`, served but not cached),
   * `http_connections`, `http_header_timeout`, `http_request_timeout` (the HTTP listeners),
   * `fds` (out of descriptors, or past 90 % of the limit: src/sys/fd_limit.ts).
   */
  limit(name: string): void {
    bump(this.#limits, name);
  }

  /** How often each bound was reached so far. */
  get limitsReached(): ReadonlyMap<string, number> {
    return this.#limits;
  }

  /** A reload was tried. */
  reload(result: "success" | "failure"): void {
    bump(this.#reloads, result);
  }
}

function bump(map: Map<string, number>, key: string, by = 1): void {
  map.set(key, (map.get(key) ?? 0) + by);
}

/** Whether /proc/self may be read (prom-client's process metrics need it). */
function procReadable(): boolean {
  try {
    Deno.readTextFileSync("/proc/self/status");
    return true;
  } catch {
    return false;
  }
}

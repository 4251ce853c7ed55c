/**
 * The query pipeline: a short list of stages `(ctx, next)`, composed in one place
 * ({@linkcode buildPipeline}). A stage either answers or hands the query to the next one; the
 * answer records where it came from.
 *
 * @module
 */

import { localAnswer } from "../policy/local_answer.ts";
import type { Route, Router } from "../policy/router.ts";
import { cacheKey, type PvdCache, type StaleResponse } from "../cache/cache.ts";
import type { ListenerConfig } from "../config/types.ts";
import type { ClientInfo } from "../listen/listener.ts";
import type { ResolverMetrics } from "./metrics.ts";
import { type AnswerSource, localResponse, type StoredResponse } from "../dns/response.ts";
import { type PvdUpstreams, UpstreamFailure } from "../upstream/pool.ts";
import { Flags, type Query, Rcode } from "../dns/wire.ts";

/** Everything a stage knows about one query. */
export interface QueryContext {
  readonly query: Query;
  readonly client: ClientInfo;
  readonly listener?: ListenerConfig | undefined;
  /** A PvD chosen by the caller (library, control API). */
  readonly explicitPvd?: string | undefined;
  /** Clock time the query arrived, ms. */
  readonly now: number;
  /** Set by the route stage. */
  route?: Route;
  /** The cache key, set by the cache stage (the upstream stage keys its in-flight map with it). */
  key?: string;
}

/** The result of the pipeline. */
export interface Answer {
  /** The reply, before rendering for one client. */
  readonly response: StoredResponse;
  /** Where it came from. */
  readonly source: AnswerSource;
  /** The PvD that answered, when one did. */
  readonly pvd?: string | undefined;
}

/**
 * A value now, or later. Stages answer synchronously when they can (a cache hit, a local
 * answer), so that the hot path allocates no promise; only an upstream query is asynchronous.
 */
export type MaybePromise<T> = T | Promise<T>;

/** Runs the rest of the pipeline for `ctx`. */
export type Next = (ctx: QueryContext) => MaybePromise<Answer>;

/** One step of the pipeline: answers, or hands `ctx` on with `next(ctx)`. */
export type Stage = (ctx: QueryContext, next: Next) => MaybePromise<Answer>;

/**
 * Chains stages so that each one's `next` runs the following stage. The chain is built once:
 * running a query through it makes no closure per stage (garbage on the hot path costs GC pauses).
 *
 * @throws {Error} (when run) if the last stage calls `next`
 */
export function compose(stages: readonly Stage[]): Next {
  const end: Next = () => {
    throw new Error("the last stage called next()");
  };
  return stages.reduceRight<Next>((next, stage) => (ctx) => stage(ctx, next), end);
}

/** The live per-PvD state; replaced as a whole (each field) when PvDs change. */
export interface PipelineState {
  readonly router: Router;
  readonly caches: ReadonlyMap<string, PvdCache>;
  readonly upstreams: ReadonlyMap<string, PvdUpstreams>;
}

/** What the pipeline works with; all of it per PvD. */
export interface PipelineDeps {
  /** Read on every query, so that a reload takes effect at once. */
  readonly state: PipelineState;
  /** How long a SERVFAIL made here (every server failed) is remembered, seconds. */
  readonly servfailTtl: number;
  /** RFC 8767: when every server of a PvD fails, serve that PvD's expired answer (TTL 30 s). */
  readonly serveStale?: boolean;
  /** Clock in ms. */
  readonly now: () => number;
  /** Called when a PvD's servers all failed (for logs). */
  readonly onUpstreamFailure?: (pvd: string, error: UpstreamFailure) => void;
  /** Counts cache hits and misses. */
  readonly metrics?: Pick<ResolverMetrics, "cache">;
  /** Called each time a rule's fallback sends a query to a second PvD (counted). */
  readonly onFallback?: (from: string, to: string) => void;
}

/** Builds the pipeline. The order of the stages is the design: read it top to bottom. */
export function buildPipeline(deps: PipelineDeps): (ctx: QueryContext) => MaybePromise<Answer> {
  // Keyed by the PvD's cache object: a PvD that changes gets a new cache, and with it a fresh
  // set of in-flight queries, so nothing learned before a change is handed out after it.
  const inflight = new WeakMap<PvdCache, Map<string, Promise<Answer>>>();
  // The part that runs inside one PvD; a rule's fallback runs it again for another PvD.
  const inPvd = compose([
    // The cache sits below the router and is per PvD: a hit can only come from the routed PvD.
    function cache(ctx, next) {
      const pvd = (ctx.route as PvdRoute).pvd;
      const key = ctx.key = keyOf(ctx.query);
      const hit = deps.state.caches.get(pvd)?.get(key, ctx.now);
      deps.metrics?.cache(pvd, hit !== undefined);
      if (hit) return { response: hit, source: "cache", pvd };
      return next(ctx);
    },
    // Identical misses in one PvD share one upstream query; the answer is cached in that PvD.
    function upstream(ctx) {
      const pvd = (ctx.route as PvdRoute).pvd;
      const key = ctx.key ?? keyOf(ctx.query);
      const cache = deps.state.caches.get(pvd);
      const upstreams = deps.state.upstreams.get(pvd);
      if (!cache || !upstreams) {
        const failed = localResponse(ctx.query, Rcode.SERVFAIL, ctx.now);
        return { response: { ...failed, kind: "servfail" }, source: "local", pvd };
      }
      let perPvd = inflight.get(cache);
      if (!perPvd) inflight.set(cache, perPvd = new Map());
      let pending = perPvd.get(key);
      if (!pending) {
        pending = fetchAndStore(deps, pvd, cache, upstreams, key, ctx.query, perPvd);
        perPvd.set(key, pending);
      }
      return pending;
    },
  ]);
  return compose([
    // Decide first: special-use names and rule actions are answered here and never leave.
    function route(ctx, next) {
      const r = deps.state.router.route({
        qname: ctx.query.qname,
        qtype: ctx.query.qtype,
        client: ctx.client.address,
        explicitPvd: ctx.explicitPvd,
        listener: ctx.listener,
      });
      ctx.route = r;
      if (r.kind === "local") {
        return { response: localAnswer(ctx.query, r.answer, ctx.now), source: "policy" };
      }
      return next(ctx);
    },
    // A failed PvD answers SERVFAIL; only a rule's explicit `fallback` may ask another PvD.
    // Without a fallback list (nearly always) it passes the answer through as it comes, so that
    // a cache hit stays synchronous.
    function fallback(ctx, next) {
      const route = ctx.route as PvdRoute;
      const first = next(ctx);
      if (route.fallback.length === 0) return first;
      return (async () => {
        const answer = await first;
        if (answer.response.kind !== "servfail") return answer;
        for (const pvd of route.fallback) {
          deps.onFallback?.(route.pvd, pvd);
          ctx.route = { ...route, pvd, fallback: [] };
          const next = await inPvd(ctx);
          if (next.response.kind !== "servfail") return next;
        }
        return answer;
      })();
    },
    (ctx) => inPvd(ctx),
  ]);
}

type PvdRoute = Extract<Route, { kind: "pvd" }>;

/** Cache-key tails by (type, class, DO, CD), made once: a key is then one concatenation. */
const keyTails = new Map<number, string>();

function keyOf(q: Query): string {
  const dnssecOk = q.edns?.do === true, cd = (q.flags & Flags.CD) !== 0;
  const slot = q.qclass * 0x40000 + q.qtype * 4 + (dnssecOk ? 2 : 0) + (cd ? 1 : 0);
  let tail = keyTails.get(slot);
  if (tail === undefined) {
    tail = cacheKey("", q.qtype, q.qclass, dnssecOk, cd);
    if (keyTails.size < 4096) keyTails.set(slot, tail);
  }
  return q.qname + tail;
}

/**
 * Asks the PvD's upstreams, caches what comes back in that PvD, and makes the answer every
 * caller waiting on this key gets. Leaves `inflight` once done.
 */
async function fetchAndStore(
  deps: PipelineDeps,
  pvd: string,
  cache: PvdCache,
  upstreams: PvdUpstreams,
  key: string,
  query: Query,
  inflight: Map<string, Promise<Answer>>,
): Promise<Answer> {
  let response: StoredResponse;
  let source: AnswerSource = "upstream";
  try {
    response = await upstreams.query({
      qname: query.qname,
      qtype: query.qtype,
      qclass: query.qclass,
      do: query.edns?.do === true,
      cd: (query.flags & Flags.CD) !== 0,
    });
  } catch (e) {
    if (!(e instanceof UpstreamFailure)) throw e;
    deps.onUpstreamFailure?.(pvd, e);
    const now = deps.now();
    // Serve-stale looks only in this PvD's own cache: a stale answer never crosses PvDs.
    const stale = deps.serveStale ? cache.getStale(key, now) : undefined;
    if (stale) {
      response = staleCopy(stale, now);
      source = "stale";
    } else {
      const failed = localResponse(query, Rcode.SERVFAIL, now);
      response = { ...failed, ttl: deps.servfailTtl, kind: "servfail" };
    }
  } finally {
    inflight.delete(key);
  }
  cache.set(key, response);
  return { response, source, pvd };
}

/** RFC 8767 §4: a stale answer goes out with TTL 30 s, and is not asked for again before then. */
const STALE_TTL = 30;

/** A copy of an expired answer whose every TTL is 30 s, fresh from `now` for 30 s. */
function staleCopy(expired: StoredResponse, now: number): StaleResponse {
  const wire = expired.wire.slice();
  for (const o of expired.ttlOffsets) {
    wire[o] = 0;
    wire[o + 1] = 0;
    wire[o + 2] = 0;
    wire[o + 3] = STALE_TTL;
  }
  return {
    ...expired,
    wire,
    storedAt: now,
    ttl: STALE_TTL,
    expiredAt: (expired as Partial<StaleResponse>).expiredAt ??
      expired.storedAt + expired.ttl * 1000,
  };
}

/**
 * Serving one query, the way into and out of the pipeline: parse → admit (allow list, rate
 * limit) → bound (in flight, per client) → resolve (the pipeline) → render (the client's ID,
 * case, TTLs, size). Answers at once when the pipeline does (a cache hit, a local answer); a
 * promise only for upstream work.
 *
 * @module
 */
import type { Config, ListenerConfig } from "../config/types.ts";
import { localResponse, renderResponse } from "../dns/response.ts";
import { parseQuery, type Query, Rcode } from "../dns/wire.ts";
import type { ClientInfo, QueryHandler } from "../listen/listener.ts";
import { AdmissionControl } from "../policy/admission.ts";
import type { ResolverMetrics } from "./metrics.ts";
import type { Answer, MaybePromise, QueryContext } from "./pipeline.ts";
import type { HandleOptions } from "./stub_types.ts";

/** Shared by every query that comes without options (an object per query is GC work). */
const NO_OPTIONS: HandleOptions = Object.freeze({});

/** Options of {@linkcode QueryServer}. */
export interface QueryServerOptions {
  /** The config in force; {@linkcode QueryServer.setConfig} replaces it on reload. */
  readonly config: Config;
  /** The composed pipeline. */
  readonly pipeline: (ctx: QueryContext) => MaybePromise<Answer>;
  readonly metrics: ResolverMetrics;
  readonly now: () => number;
  readonly log: (line: string) => void;
}

/** Answers raw queries through the pipeline, within the config's bounds. */
export class QueryServer {
  #config: Config;
  #admission: AdmissionControl;
  #inFlight = 0;
  readonly #perClient = new Map<string, number>(); // in-flight queries per client address
  #idle: (() => void) | undefined; // told when the last in-flight query is done (drain)
  readonly #o: QueryServerOptions;

  /** A server for `options.config`. */
  constructor(options: QueryServerOptions) {
    this.#o = options;
    this.#config = options.config;
    this.#admission = new AdmissionControl(options.config);
  }

  /** Queries taken and not yet answered. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Moves to a reloaded config: bounds, allow list and rate limits from the next query. */
  setConfig(config: Config): void {
    this.#config = config;
    this.#admission = new AdmissionControl(config);
  }

  /** Settles when no query is in flight (for a graceful stop). */
  idle(): Promise<void> {
    if (this.#inFlight === 0) return Promise.resolve();
    return new Promise<void>((r) => this.#idle = r);
  }

  /** Stops telling {@linkcode QueryServer.idle}'s caller (its drain deadline passed). */
  forgetIdle(): void {
    this.#idle = undefined;
  }

  /** The pipeline's answer for a parsed query (no bounds: the library and the control API). */
  resolve = (
    query: Query,
    client: ClientInfo,
    explicitPvd?: string,
    listener?: ListenerConfig,
  ): MaybePromise<Answer> =>
    this.#o.pipeline({ query, client, listener, explicitPvd, now: this.#o.now() });

  /** Answers now when it can (a cache hit, a local answer); a promise only for upstream work. */
  serve = (
    raw: Uint8Array,
    client: ClientInfo,
    opts: HandleOptions = NO_OPTIONS,
  ): ReturnType<QueryHandler> => {
    const metrics = this.#o.metrics;
    const parsed = parseQuery(raw);
    if (parsed.kind === "drop") return null;
    if (parsed.kind === "error") {
      metrics.request(client.transport, -1);
      metrics.response(undefined, parsed.rcode & 0xf, "local");
      return parsed.reply;
    }
    const q = parsed.query;
    metrics.request(client.transport, q.qtype);
    const admission = this.#admission;
    if (!admission.open) {
      const verdict = admission.admit(client.address, client.transport, this.#o.now());
      if (verdict !== "ok") {
        return this.#refuse(q, client, verdict === "refuse" ? "acl" : "rate_limit", verdict);
      }
    }
    // Bounded: past a bound a UDP query is dropped (the client retries), a TCP one refused.
    const limits = this.#config.limits;
    if (this.#inFlight >= limits.maxInFlight) return this.#refuse(q, client, "in_flight");
    const mine = this.#perClient.get(client.address) ?? 0;
    if (mine >= limits.maxInFlightPerClient && client.address !== "") {
      return this.#refuse(q, client, "client_in_flight");
    }
    let answer: Answer | Promise<Answer>;
    try {
      answer = this.resolve(q, client, opts.explicitPvd, opts.listener);
    } catch (e) {
      return this.#failed(q, e);
    }
    if (!(answer instanceof Promise)) {
      opts.onAnswer?.(answer);
      return this.#render(answer, q, client.transport);
    }
    this.#inFlight++;
    this.#perClient.set(client.address, mine + 1);
    const t0 = performance.now();
    // One reaction for both outcomes (not then + finally: a promise less on every miss's path).
    const settled = () => {
      this.#inFlight--;
      const left = this.#perClient.get(client.address)! - 1;
      if (left > 0) this.#perClient.set(client.address, left);
      else this.#perClient.delete(client.address);
      if (this.#inFlight === 0) this.#idle?.();
    };
    return answer.then((a) => {
      try {
        opts.onAnswer?.(a);
        return this.#render(a, q, client.transport, t0);
      } catch (e) {
        return this.#failed(q, e);
      } finally {
        settled();
      }
    }, (e) => {
      settled();
      return this.#failed(q, e);
    });
  };

  #render(answer: Answer, q: Query, transport: ClientInfo["transport"], t0?: number): Uint8Array {
    const maxSize = transport === "udp" ? (q.edns ? q.edns.udpSize : 512) : 65535;
    const seconds = t0 === undefined ? undefined : (performance.now() - t0) / 1000;
    this.#o.metrics.response(answer.pvd, answer.response.rcode, answer.source, seconds);
    return renderResponse(answer.response, q, this.#o.now(), maxSize);
  }

  #failed(q: Query, e: unknown): null {
    this.#o.log(`pvdns: internal error for ${q.qname}: ${(e as Error).stack ?? e}`);
    return null;
  }

  /** A query past a bound or outside the allow list: counted; REFUSED, TC or nothing. */
  #refuse(
    q: Query,
    client: ClientInfo,
    limit: string,
    verdict: "refuse" | "drop" | "slip" = client.transport === "udp" ? "drop" : "refuse",
  ): Uint8Array | null {
    this.#o.metrics.limit(limit);
    if (verdict === "drop") return null;
    const t = this.#o.now();
    const rcode = verdict === "refuse" ? Rcode.REFUSED : Rcode.NOERROR;
    this.#o.metrics.response(undefined, rcode, "policy");
    // A slip is an empty reply with TC set (rendered with no room): a real client retries on TCP.
    return renderResponse(localResponse(q, rcode, t), q, t, verdict === "slip" ? 0 : 65535);
  }
}

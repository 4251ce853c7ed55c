/**
 * The upstream servers of one PvD: which server to ask first, how long to wait for each, when to
 * give up, and which servers are down. A query that fails on every server of the PvD fails; it
 * is never sent to another PvD from here (DESIGN invariant 1).
 *
 * - **Order**: by smoothed round-trip time (config order until measured); servers that are down
 *   go last, and are skipped while the PvD has a server that is up (CoreDNS `forward`).
 * - **Health**: each server counts its consecutive failures (timeout, refused, tls, http,
 *   bad-answer, closed; any answer resets it). After `upstream.maxFails` it is down, and one
 *   background probe at a time (`. NS`, backing off from 1 s to 30 s) asks it until it answers.
 * - **Budget**: each try waits `upstream.timeoutMs`; the whole query `upstream.deadlineMs`, then
 *   {@linkcode UpstreamFailure} (the pipeline answers SERVFAIL).
 * - **Racing**: a PvD with `"parallel": 2` asks its two best servers at once and takes the first
 *   usable answer; when one fails the next of the same PvD starts. The slower try is left to end
 *   by itself (bounded by its timeout) so that its server's health and RTT are still learned.
 * - **Encryption** (`encryption`, `upstream/order.ts`): `strict` asks DoT/DoH servers only (a PvD
 *   whose servers are all `tls://` or `https://` has no Do53 transport at all); `prefer` asks
 *   them first and Do53 only while every one of them is down (counted, logged once per change);
 *   `off` orders all by RTT.
 * - **Trust** (`upstream/answer_trust.ts`): AD is kept only for a `trustAd` PvD; with `rebind:
 * "block"`
 *   private addresses of names outside the PvD's accepted zones are dropped.
 * - **0x20** (`upstream.caseRandomisation`): a UDP query's name goes out in random letter case
 *   and the answer must repeat it. A server that answers in another case is asked again at
 *   once without it, and without it for {@linkcode NO_CASE_MS}.
 * - **DoH by host name**: `https://HOST/PATH` is looked up through this PvD's own Do53 servers
 *   only (`upstream/hosts.ts`); the addresses learned are the only ones that server's transport
 *   may connect to.
 *
 * @module
 */

import { LeakBlockedError } from "../policy/leak_guard.ts";
import { type FailureReason, TransportError } from "../transports/transport.ts";
import type { EncryptionPolicy, PvdConfig, ServerConfig } from "../config/types.ts";
import { BadResponseError, type IndexOptions, type StoredResponse } from "../dns/response.ts";
import { isFdExhaustion } from "../sys/fd_limit.ts";
import { TryTimeouts } from "./try_timeouts.ts";
import {
  type AttemptReason,
  encryptionPolicy,
  type PvdUpstreamsOptions,
  type ServerHealth,
  UpstreamFailure,
  type UpstreamQuestion,
} from "./types.ts";
import { UpstreamHostLookups } from "./hosts.ts";
import { type AskContext, askServer, type ServerState, serverStates } from "./servers.ts";
import { isEncrypted, queryServers } from "./order.ts";
import { type AnswerTrust, rebindFilter, trustOf } from "./answer_trust.ts";
import { Rcode, Type } from "../dns/wire.ts";

export * from "./types.ts";

/** How one try ended. */
type Outcome =
  | { readonly ok: true; readonly response: StoredResponse }
  | { readonly ok: false; readonly reason: AttemptReason | "cancelled" };

const MAX_PROBE_MS = 30_000;
export { NO_CASE_MS } from "./servers.ts";

/** The servers of one PvD, each bound to one of the PvD's source addresses. */
export class PvdUpstreams {
  /** The PvD. */
  readonly pvd: string;
  /** True when the PvD asks DoT/DoH servers only (`encryption: "strict"`). */
  readonly strictEncrypted: boolean;
  #servers: ServerState[];
  #options: PvdUpstreamsOptions;
  #now: () => number;
  #maxFails: number;
  #parallel: number;
  #closing = new AbortController();
  /** Aborts the tries of each query in flight (called by close()). */
  #running = new Set<(reason: unknown) => void>();
  /** Every try's timeout (they are all `upstream.timeoutMs` long: one timer for all). */
  #timeouts: TryTimeouts;
  #hostLookups: UpstreamHostLookups;
  #caseRandomisation: boolean;
  #policy: EncryptionPolicy;
  /** A `prefer` PvD that is asking its Do53 servers now (every encrypted one is down). */
  #plain = false;
  #trust: AnswerTrust;
  /** What indexResponse believes of this PvD's answers when no rebinding check applies. */
  #indexOptions: IndexOptions;
  #askContext: AskContext;

  /** Creates transports for every server of `pvd` (no socket is opened yet). */
  constructor(pvd: PvdConfig, options: PvdUpstreamsOptions) {
    this.pvd = pvd.id;
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#maxFails = options.upstream.maxFails ?? 3;
    this.#parallel = Math.max(1, pvd.parallel ?? 1);
    this.#caseRandomisation = options.upstream.caseRandomisation === true;
    this.#timeouts = new TryTimeouts(options.upstream.timeoutMs);
    // A DoH server's host is looked up through this PvD's own Do53 servers only.
    this.#hostLookups = new UpstreamHostLookups({
      pvd: pvd.id,
      guard: options.guard,
      now: this.#now,
      ask: (q) =>
        this.#run(
          this.#servers.filter((s) => s.server.protocol === "udp" || s.server.protocol === "tcp"),
          q,
          undefined,
          "off",
        ),
    });
    this.#policy = encryptionPolicy(pvd);
    this.strictEncrypted = this.#policy === "strict";
    this.#trust = trustOf(pvd, options.onRebindBlocked);
    this.#indexOptions = Object.freeze({ trustAd: this.#trust.trustAd });
    this.#askContext = {
      caseRandomisation: this.#caseRandomisation,
      now: this.#now,
      cache: options.cache,
      answerOptions: (qname) => this.#answerOptions(qname),
    };
    this.#servers = serverStates(
      pvd,
      options,
      (server, host, signal) => this.#hostLookups.resolve(server, host, signal),
    );
  }

  /**
   * Marks a server unusable (a reason) or usable again (undefined). A PvD whose servers are all
   * blocked fails closed: SERVFAIL, nothing sent.
   */
  setBlocked(serverText: string, reason: string | undefined): void {
    for (const s of this.#servers) if (s.server.text === serverText) s.blocked = reason;
  }

  /** The servers in the order the next query would try them (down ones last). */
  get order(): readonly ServerConfig[] {
    const { first, fallback } = queryServers(this.#servers, this.#policy, (s) => this.#isDown(s));
    const asked = new Set([...first, ...fallback]);
    const rest = this.#sorted(this.#servers.filter((s) => !asked.has(s)));
    return [...first, ...fallback, ...rest].map((s) => s.server);
  }

  /** Each server's failure count, state and smoothed RTT, in configured order. */
  get health(): readonly ServerHealth[] {
    return this.#servers.map((s) => ({
      server: s.server.text,
      fails: s.fails,
      down: this.#isDown(s),
      probing: s.probing,
      srtt: s.srtt,
    }));
  }

  #isDown(s: ServerState): boolean {
    return this.#maxFails > 0 && s.fails >= this.#maxFails;
  }

  #sorted(states: readonly ServerState[]): ServerState[] {
    return [...states].sort((a, b) =>
      Number(this.#isDown(a)) - Number(this.#isDown(b)) || a.srtt - b.srtt
    );
  }

  /**
   * Asks the PvD's servers, best first (`parallel` at a time), until one gives a usable answer.
   *
   * @throws {UpstreamFailure} when every server failed or the deadline passed
   */
  query(question: UpstreamQuestion, signal?: AbortSignal): Promise<StoredResponse> {
    return this.#run(this.#servers, question, signal, this.#policy);
  }

  /** Counts a query of a `prefer` PvD that goes to Do53, and tells of a change either way. */
  #usingPlain(plain: boolean): void {
    if (plain) this.#options.onEncryption?.("fallback");
    if (plain === this.#plain) return;
    this.#plain = plain;
    this.#options.onEncryption?.(plain ? "plain" : "encrypted");
  }

  #run(
    states: readonly ServerState[],
    question: UpstreamQuestion,
    signal: AbortSignal | undefined,
    policy: EncryptionPolicy,
  ): Promise<StoredResponse> {
    const { timeoutMs, deadlineMs } = this.#options.upstream;
    const attempts: { server: string; reason: AttemptReason }[] = [];
    for (const state of states) {
      if (state.blocked) attempts.push({ server: state.server.text, reason: "route" });
    }
    const isDown = (s: ServerState) => this.#isDown(s);
    const { first, fallback, plain } = queryServers(states, policy, isDown);
    const candidates = first;
    if (candidates.length === 0 || this.#closing.signal.aborted || signal?.aborted) {
      return Promise.reject(new UpstreamFailure(this.pvd, attempts));
    }

    // No timer for the deadline and no AbortController for the query: each try's timer is cut to
    // what is left of the deadline, and pvdns closing (or the caller) aborts the running tries by
    // hand. Timers, controllers and listeners were most of a miss's bookkeeping (bench/README.md,
    // "What moved the figures").
    const deadlineAt = performance.now() + deadlineMs;
    return new Promise<StoredResponse>((resolve, reject) => {
      const tries = new Set<AbortController>();
      let next = 0;
      let running = 0;
      let settled = false;
      const finish = (error?: UpstreamFailure, response?: StoredResponse) => {
        if (settled) return;
        settled = true;
        done();
        if (error) reject(error);
        else resolve(response!);
      };
      // Tries that lost a race go on to their own end (their server's health is learned), and
      // pvdns closing still ends them: abortAll stays registered until the last try is done.
      const abortAll = (reason: unknown) => {
        for (const c of tries) c.abort(reason);
        finish(new UpstreamFailure(this.pvd, attempts));
      };
      const onCaller = () => abortAll(signal!.reason);
      const done = () => {
        if (!settled || running > 0) return;
        this.#running.delete(abortAll);
        signal?.removeEventListener("abort", onCaller);
      };
      this.#running.add(abortAll);
      signal?.addEventListener("abort", onCaller, { once: true });
      if (policy === "prefer") this.#usingPlain(plain);
      // prefer: once the tries so far have taken every encrypted server down, the same query
      // goes on with the PvD's Do53 servers.
      const encryptedDown = () =>
        this.#servers.every((s) => !isEncrypted(s.server) || s.blocked || this.#isDown(s));
      const start = () => {
        if (next >= candidates.length && fallback.length && running === 0 && encryptedDown()) {
          candidates.push(...fallback.splice(0));
          this.#usingPlain(true);
        }
        while (!settled && running < this.#parallel && next < candidates.length) {
          const left = deadlineAt - performance.now();
          if (left <= 0) break;
          const state = candidates[next++]!;
          running++;
          const perTry = new AbortController();
          tries.add(perTry);
          const onTimeout = () => perTry.abort(timeoutError());
          // A try cut short by the deadline (a retry, late) gets a timer of its own.
          const ticket = left >= timeoutMs ? this.#timeouts.add(onTimeout) : -1;
          const own = ticket < 0 ? setTimeout(onTimeout, Math.ceil(left)) : undefined;
          this.#attempt(state, question, perTry.signal, signal).then((outcome) => {
            if (own === undefined) this.#timeouts.cancel(ticket);
            else clearTimeout(own);
            tries.delete(perTry);
            running--;
            if (settled) return done(); // lost the race: its health was recorded anyway
            if (outcome.ok) return finish(undefined, outcome.response);
            if (outcome.reason !== "cancelled") {
              attempts.push({ server: state.server.text, reason: outcome.reason });
            }
            start();
            if (running === 0) finish(new UpstreamFailure(this.pvd, attempts));
          });
        }
      };
      start();
    });
  }

  /** One try at one server; records its health; never throws. */
  async #attempt(
    state: ServerState,
    question: UpstreamQuestion,
    signal: AbortSignal,
    callerSignal?: AbortSignal,
  ): Promise<Outcome> {
    const started = this.#now();
    const t0 = performance.now();
    const report = (reason?: string) =>
      this.#options.onExchange?.(state.server, (performance.now() - t0) / 1000, reason);
    const { timeoutMs } = this.#options.upstream;
    try {
      const response = await this.#ask(state, question, signal);
      const rtt = this.#now() - started;
      state.fails = 0; // it answered: it is up, whatever the rcode
      if (response.rcode === Rcode.NOERROR || response.rcode === Rcode.NXDOMAIN) {
        state.srtt = state.srtt >= timeoutMs ? rtt : 0.7 * state.srtt + 0.3 * rtt;
        report();
        return { ok: true, response };
      }
      // SERVFAIL, REFUSED and the like: this server could not answer; try the next one.
      report("rcode");
      return { ok: false, reason: "rcode" };
    } catch (e) {
      if (e instanceof LeakBlockedError) {
        report("leak");
        return { ok: false, reason: "leak" };
      }
      // pvdns's own bound, not the server's fault: nothing sent, health untouched.
      if (e instanceof SlotsFullError) return { ok: false, reason: "limit" };
      const reason: FailureReason = e instanceof TransportError
        ? e.reason
        : e instanceof BadResponseError
        ? "bad-answer"
        : "closed";
      // Out of descriptors (EMFILE/ENFILE binding or connecting): pvdns's own limit, counted.
      if (isFdExhaustion(e) || isFdExhaustion((e as Error)?.cause)) this.#options.onLimit?.("fds");
      // The caller went away or pvdns is closing: nothing was learned about the server.
      if (callerSignal?.aborted || this.#closing.signal.aborted) {
        return { ok: false, reason: "cancelled" };
      }
      report(reason);
      if (reason === "leak" || reason === "route") return { ok: false, reason };
      this.#failed(state);
      return { ok: false, reason };
    }
  }

  #failed(state: ServerState): void {
    state.fails++;
    const { timeoutMs } = this.#options.upstream;
    state.srtt = Math.min(Math.max(state.srtt, timeoutMs) * 1.5, 20 * timeoutMs);
    if (this.#isDown(state) && !state.probing) void this.#probe(state);
  }

  /** Asks a down server `. NS` until it answers: one probe at a time, backing off. */
  async #probe(state: ServerState): Promise<void> {
    state.probing = true;
    let wait = this.#options.probeIntervalMs ?? 1000;
    const probe = { qname: ".", qtype: Type.NS, qclass: 1, do: false, cd: false };
    try {
      for (let round = 0; this.#isDown(state) && !this.#closing.signal.aborted; round++) {
        await this.#sleep(wait);
        if (this.#closing.signal.aborted || !this.#isDown(state)) break;
        if (state.blocked) continue; // strictRoutes: nothing may be sent to it now
        const signal = AbortSignal.any([
          this.#closing.signal,
          AbortSignal.timeout(this.#options.upstream.timeoutMs),
        ]);
        try {
          const started = this.#now();
          await this.#ask(state, probe, signal);
          state.fails = 0; // any answer will do
          // Its smoothed RTT was pushed far up while it failed: start again from the probe's, or
          // the server would stay last behind the others for good (seen in bench/soak.ts).
          state.srtt = this.#now() - started;
          // prefer: an encrypted server is back, so the PvD's queries leave Do53 from now.
          if (this.#plain && isEncrypted(state.server)) this.#usingPlain(false);
        } catch {
          wait = Math.min(wait * 2, MAX_PROBE_MS);
        }
      }
    } finally {
      state.probing = false;
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const closing = this.#closing.signal;
      const done = () => {
        clearTimeout(timer);
        closing.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      closing.addEventListener("abort", done, { once: true });
    });
  }

  async #ask(
    state: ServerState,
    q: UpstreamQuestion,
    signal: AbortSignal,
  ): Promise<StoredResponse> {
    const slots = this.#options.slots;
    if (slots) {
      if (slots.active >= slots.max) {
        slots.onFull?.();
        throw new SlotsFullError();
      }
      slots.active++;
    }
    try {
      return await askServer(state, q, signal, this.#askContext);
    } finally {
      if (slots) slots.active--;
    }
  }

  /** What is believed of an answer to `qname` (`upstream/answer_trust.ts`). */
  #answerOptions(qname: string): IndexOptions {
    const keepRecord = rebindFilter(this.#trust, qname);
    if (!keepRecord) return this.#indexOptions;
    const onDropped = this.#trust.onRebindBlocked;
    return { trustAd: this.#trust.trustAd, keepRecord, ...(onDropped ? { onDropped } : {}) };
  }

  /** Closes every transport and stops the probes; queries in flight fail. */
  async close(): Promise<void> {
    this.#closing.abort();
    for (const abortAll of [...this.#running]) abortAll(this.#closing.signal.reason);
    this.#timeouts.close();
    for (const s of this.#servers) {
      await s.transport.close();
      await s.tcp?.close();
    }
  }
}

/** The abort reason of a try or query that ran out of time. */
function timeoutError(): DOMException {
  return new DOMException("The upstream query timed out", "TimeoutError");
}

/** Every upstream slot is taken (`limits.maxUpstreamQueries`). */
class SlotsFullError extends Error {
  constructor() {
    super("every upstream query slot is taken");
    this.name = "SlotsFullError";
  }
}

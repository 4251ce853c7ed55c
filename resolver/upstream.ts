/**
 * The upstream servers of one PvD: which server to ask first (smoothed RTT), how long to wait for
 * each, when to give up. A query that fails on every server of the PvD fails; it is never sent
 * to another PvD from here (DESIGN invariant 1).
 *
 * @module
 */

import type { LeakGuard } from "../policy/leak_guard.ts";
import { TcpTransport } from "../transports/tcp.ts";
import { type FailureReason, type Transport, TransportError } from "../transports/transport.ts";
import { UdpTransport } from "../transports/udp.ts";
import type { CacheConfig, PvdConfig, ServerConfig, UpstreamOptions } from "./config_types.ts";
import { BadResponseError, indexResponse, type StoredResponse } from "./response.ts";
import { buildUpstreamQuery, Flags, Rcode } from "./wire.ts";

/** The question an upstream query asks. */
export interface UpstreamQuestion {
  readonly qname: string;
  readonly qtype: number;
  readonly qclass: number;
  readonly do: boolean;
  readonly cd: boolean;
}

/** Every server of a PvD failed; carries what happened at each. */
export class UpstreamFailure extends Error {
  /** One entry per attempt. */
  readonly attempts: readonly { server: string; reason: FailureReason | "rcode" }[];
  /** Creates the error. */
  constructor(pvd: string, attempts: UpstreamFailure["attempts"]) {
    super(
      `every server of PvD ${pvd} failed: ${
        attempts.map((a) => `${a.server} (${a.reason})`).join(", ") || "no server"
      }`,
    );
    this.name = "UpstreamFailure";
    this.attempts = attempts;
  }
}

/** Options of {@linkcode PvdUpstreams}. */
export interface PvdUpstreamsOptions {
  readonly upstream: UpstreamOptions;
  readonly cache: CacheConfig;
  readonly guard: LeakGuard;
  /** Clock in ms. @default Date.now */
  readonly now?: () => number;
}

interface ServerState {
  readonly server: ServerConfig;
  readonly udp: Transport;
  readonly tcp: Transport;
  /** Smoothed round-trip time, ms. */
  srtt: number;
  /** Why the server may not be used now (strict routes), if it may not. */
  blocked?: string | undefined;
}

/** The Do53 servers of one PvD, each bound to one of the PvD's source addresses. */
export class PvdUpstreams {
  /** The PvD. */
  readonly pvd: string;
  #servers: ServerState[];
  #options: PvdUpstreamsOptions;
  #now: () => number;

  /** Creates transports for every server of `pvd`. */
  constructor(pvd: PvdConfig, options: PvdUpstreamsOptions) {
    this.pvd = pvd.id;
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#servers = pvd.servers.map((server, i) => {
      if (server.protocol !== "udp" && server.protocol !== "tcp") {
        throw new RangeError(
          `PvD ${pvd.id}: server "${server.text}" uses ${server.protocol}, which this build does not support yet`,
        );
      }
      const source = pvd.sourceAddresses.find((a) => a.includes(":") === (server.family === 6));
      if (!source) {
        throw new RangeError(`PvD ${pvd.id}: no source address of the family of "${server.text}"`);
      }
      const common = { pvd: pvd.id, server, source, guard: options.guard };
      const tcp = new TcpTransport(common);
      // A tcp:// server is asked over TCP only; a plain one over UDP with TCP for truncation.
      const udp = server.protocol === "tcp" ? tcp : new UdpTransport(common);
      return { server, udp, tcp, srtt: i }; // config order until measured
    });
  }

  /**
   * Marks a server unusable (a reason) or usable again (undefined). A PvD whose servers are all
   * blocked fails closed: SERVFAIL, nothing sent.
   */
  setBlocked(serverText: string, reason: string | undefined): void {
    for (const s of this.#servers) if (s.server.text === serverText) s.blocked = reason;
  }

  /** The servers in the order the next query would try them. */
  get order(): readonly ServerConfig[] {
    return this.#sorted().map((s) => s.server);
  }

  #sorted(): ServerState[] {
    return [...this.#servers].sort((a, b) => a.srtt - b.srtt);
  }

  /**
   * Asks the PvD's servers, best first, until one gives a usable answer.
   *
   * @throws {UpstreamFailure} when every server failed or the deadline passed
   */
  async query(question: UpstreamQuestion, signal?: AbortSignal): Promise<StoredResponse> {
    const { timeoutMs, deadlineMs } = this.#options.upstream;
    const deadline = AbortSignal.timeout(deadlineMs);
    const overall = signal ? AbortSignal.any([deadline, signal]) : deadline;
    const attempts: { server: string; reason: FailureReason | "rcode" }[] = [];
    for (const state of this.#sorted()) {
      if (overall.aborted) break;
      if (state.blocked) {
        attempts.push({ server: state.server.text, reason: "route" });
        continue;
      }
      const started = this.#now();
      const perTry = AbortSignal.any([overall, AbortSignal.timeout(timeoutMs)]);
      try {
        const response = await this.#ask(state, question, perTry);
        const rtt = this.#now() - started;
        if (response.rcode === Rcode.NOERROR || response.rcode === Rcode.NXDOMAIN) {
          state.srtt = state.srtt >= timeoutMs ? rtt : 0.7 * state.srtt + 0.3 * rtt;
          return response;
        }
        // SERVFAIL, REFUSED and the like: this server could not answer; try the next one.
        attempts.push({ server: state.server.text, reason: "rcode" });
      } catch (e) {
        const reason = e instanceof TransportError
          ? e.reason
          : e instanceof BadResponseError
          ? "bad-answer"
          : "closed";
        attempts.push({ server: state.server.text, reason });
        if (reason === "leak") continue;
        state.srtt = Math.max(state.srtt, timeoutMs) * 1.5;
      }
    }
    throw new UpstreamFailure(this.pvd, attempts);
  }

  async #ask(
    state: ServerState,
    q: UpstreamQuestion,
    signal: AbortSignal,
  ): Promise<StoredResponse> {
    const id = crypto.getRandomValues(new Uint16Array(1))[0]!;
    const wire = buildUpstreamQuery({ id, ...q });
    let answer = await state.udp.exchange(wire, { signal });
    if ((answer[2]! << 8 | answer[3]!) & Flags.TC && state.udp !== state.tcp) {
      answer = await state.tcp.exchange(wire, { signal }); // RFC 7766: retry over TCP, same source
    }
    return indexResponse(answer, this.#now(), this.#options.cache);
  }

  /** Closes every transport. */
  async close(): Promise<void> {
    for (const s of this.#servers) {
      await s.udp.close();
      await s.tcp.close();
    }
  }
}

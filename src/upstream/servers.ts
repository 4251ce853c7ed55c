/**
 * The servers of one PvD as {@linkcode PvdUpstreams} (upstream/pool.ts) keeps them: each one's
 * transports, bound to a source address of the PvD of the server's family, and its health.
 *
 * @module
 */

import { readCaFiles } from "../transports/_trust.ts";
import { createTransport } from "../transports/create.ts";
import { TcpTransport } from "../transports/tcp.ts";
import type { Transport } from "../transports/transport.ts";
import type { PvdConfig, ServerConfig } from "../config/types.ts";
import type { PvdUpstreamsOptions, UpstreamQuestion } from "./types.ts";
import { CaseMismatchError } from "../transports/transport.ts";
import {
  BadResponseError,
  type IndexOptions,
  indexResponse,
  type StoredResponse,
} from "../dns/response.ts";
import type { TtlRules } from "../dns/response.ts";
import { buildUpstreamQuery, randomQueryId } from "../dns/query.ts";
import { Flags } from "../dns/wire.ts";

/** One server of a PvD: its wires and its health. */
export interface ServerState {
  /** The server, as configured. */
  readonly server: ServerConfig;
  /** The server's own wire. */
  readonly transport: Transport;
  /** For a plain (udp) server: TCP, used when an answer is truncated (RFC 7766). */
  readonly tcp?: Transport;
  /** Smoothed round-trip time, ms. */
  srtt: number;
  /** Consecutive failures. */
  fails: number;
  /** A background probe is running (the server is down). */
  probing: boolean;
  /** Why the server may not be used now (strict routes), if it may not. */
  blocked?: string | undefined;
  /** Until when (clock ms) its queries go without 0x20: it answered one in another case. */
  noCaseUntil: number;
}

/**
 * Makes the transports of every server of `pvd` (no socket is opened yet). `resolveHost` looks
 * up an `https://HOST/PATH` server's HOST (through the PvD's own Do53 servers).
 *
 * @throws {RangeError} when the PvD has no source address of a server's family
 */
export function serverStates(
  pvd: PvdConfig,
  options: PvdUpstreamsOptions,
  resolveHost: (server: ServerConfig, host: string, signal: AbortSignal) => Promise<string[]>,
): ServerState[] {
  const encrypted = pvd.servers.some((s) => s.protocol === "tls" || s.protocol === "https");
  const ca = encrypted ? readCaFiles([pvd.caFile, options.caFile]) : [];
  const make = options.createTransport ?? createTransport;
  const told = options.onUnexpectedAnswer;
  return pvd.servers.map((server, i) => {
    const source = pvd.sourceAddresses.find((a) => a.includes(":") === (server.family === 6)) ??
      (server.family === undefined ? pvd.sourceAddresses[0] : undefined);
    if (!source) {
      throw new RangeError(`PvD ${pvd.id}: no source address of the family of "${server.text}"`);
    }
    const common = {
      pvd: pvd.id,
      server,
      source,
      guard: options.guard,
      ca,
      ...(told ? { onUnexpectedAnswer: (burstPorts: number) => told(server, burstPorts) } : {}),
    };
    const transport = make({
      ...common,
      resolve: (host: string, signal: AbortSignal) => resolveHost(server, host, signal),
    });
    // A plain server is asked over UDP, and again over TCP from the same source address when
    // the answer is truncated. No other wire ever falls back to Do53.
    const tcp = server.protocol === "udp" ? new TcpTransport(common) : undefined;
    return {
      server,
      transport,
      ...(tcp ? { tcp } : {}),
      srtt: i,
      fails: 0,
      probing: false,
      noCaseUntil: 0,
    };
  });
}

/** How long a server that did not keep a query's letter case is asked without 0x20, ms. */
export const NO_CASE_MS = 15 * 60_000;

/** What asking one server needs besides its state. */
export interface AskContext {
  /** `upstream.caseRandomisation`. */
  readonly caseRandomisation: boolean;
  /** Clock in ms. */
  readonly now: () => number;
  /** TTL rules for indexing the answer. */
  readonly cache: TtlRules;
  /** What is believed of an answer to a name (AD, rebinding filter: `upstream/answer_trust.ts`). */
  readonly answerOptions: (qname: string) => IndexOptions;
}

/**
 * One exchange with one server: the query (0x20 over UDP when on), TCP again from the same source
 * when the UDP answer is truncated (RFC 7766), the answer checked and indexed.
 *
 * @throws {TransportError} {@linkcode BadResponseError} when the server gave no usable answer
 */
export async function askServer(
  state: ServerState,
  q: UpstreamQuestion,
  signal: AbortSignal,
  ctx: AskContext,
): Promise<StoredResponse> {
  // 0x20 over UDP only (an off-path attacker cannot answer over a stream), unless the server
  // lost a query's case lately.
  const randomCase = ctx.caseRandomisation && state.server.protocol === "udp" &&
    state.noCaseUntil <= ctx.now();
  let wire = buildUpstreamQuery({ id: randomQueryId(), ...q, randomCase });
  let answer: Uint8Array;
  try {
    answer = await state.transport.exchange(wire, { signal, exactCase: randomCase });
  } catch (e) {
    if (!(e instanceof CaseMismatchError)) throw e;
    // Asked again at once without 0x20 (fresh ID and port). A forger would have needed the port
    // and ID to get here, and then could only turn 0x20 off for this server a while.
    state.noCaseUntil = ctx.now() + NO_CASE_MS;
    wire = buildUpstreamQuery({ id: randomQueryId(), ...q });
    answer = await state.transport.exchange(wire, { signal });
  }
  if ((answer[2]! << 8 | answer[3]!) & Flags.TC && state.tcp) {
    answer = await state.tcp.exchange(wire, { signal }); // RFC 7766: retry over TCP, same source
  }
  // Truncated over TCP, DoT or DoH (or over UDP with no TCP to retry on): a partial answer that
  // would be cached and served as whole. Never downgrade; the next server is asked.
  if ((answer[2]! << 8 | answer[3]!) & Flags.TC) {
    throw new BadResponseError("truncated answer over a stream");
  }
  return indexResponse(answer, ctx.now(), ctx.cache, ctx.answerOptions(q.qname));
}

/**
 * One query of a `PvdResolver`: name → wire → backend → rcode check → decoded answer section,
 * bounded by a timeout and aborted by the caller's signal or the resolver's `cancel()`. Inside
 * the pipeline NXDOMAIN and NODATA are answers; here, at the library edge, they become
 * {@linkcode DnsError}s with Node's codes (STYLE lesson 8).
 *
 * @module
 */

import { decodeMessage, parseQueryName, parseQueryType } from "../dns/json.ts";
import { Rcode } from "../dns/wire.ts";
import { buildUpstreamQuery } from "../dns/query.ts";
import type { PvdBackend } from "./backend.ts";
import { ControlError, DnsError, type DnsErrorCode } from "./errors.ts";
import type { DecodedAnswer } from "./records.ts";

/** Options of every resolution call. */
export interface ResolveOptions {
  /** Resolve in this PvD (its ID). Absent: pvdns routes the name as it would any query. */
  readonly pvd?: string | undefined;
  /** Abort: the call fails with `ECANCELLED`. */
  readonly signal?: AbortSignal | undefined;
}

const RCODE_ERRORS: Record<number, DnsErrorCode> = {
  [Rcode.FORMERR]: "EFORMERR",
  [Rcode.SERVFAIL]: "ESERVFAIL",
  [Rcode.NXDOMAIN]: "ENOTFOUND",
  [Rcode.NOTIMP]: "ENOTIMP",
  [Rcode.REFUSED]: "EREFUSED",
};

/** What {@linkcode queryAnswer} asks, and what its errors name. */
export interface AnswerQuery {
  /** The name to query. */
  readonly name: string;
  /** The record type to query (a mnemonic: `A`, `PTR`, …). */
  readonly type: string;
  /** Ask in this PvD (normalized ID); undefined: pvdns routes the name. */
  readonly pvd: string | undefined;
  /** Node's `syscall` named by the errors. */
  readonly syscall: string;
  /** Node's `hostname` named by the errors (the IP address for a reverse lookup). */
  readonly hostname: string;
  /** The caller's signal: aborting it fails the query with `ECANCELLED`. */
  readonly signal?: AbortSignal | undefined;
  /** The resolver's `cancel()` signal: aborting it fails the query with `ECANCELLED`. */
  readonly cancel: AbortSignal;
  /** Give up after this long with `ETIMEOUT`, ms. */
  readonly timeout: number;
}

/**
 * Runs one query through `backend` and decodes the answer section.
 *
 * @throws {DnsError} with Node's code: a bad name, a non-NOERROR rcode, no record of the type
 * asked (`ENODATA`), an unknown PvD, a dropped query, a timeout, a cancel, an unreachable daemon
 */
export async function queryAnswer(backend: PvdBackend, q: AnswerQuery): Promise<DecodedAnswer> {
  const { type, pvd, syscall, hostname, timeout } = q;
  const fail = (
    code: DnsErrorCode,
    more: Partial<{ pvd: string; detail: string; cause: unknown }> = {},
  ) => new DnsError(code, { hostname, syscall, pvd, ...more });
  let qname: string;
  try {
    qname = parseQueryName(q.name);
  } catch (e) {
    throw fail("EBADNAME", { detail: (e as Error).message });
  }
  const query = buildUpstreamQuery({
    id: Math.floor(Math.random() * 0x10000),
    qname,
    qtype: parseQueryType(type),
    qclass: 1,
    do: false,
    cd: false,
  });
  const controller = new AbortController();
  const abort = () => controller.abort();
  const signals = [q.signal, q.cancel].filter((s) => s !== undefined);
  if (signals.some((s) => s.aborted)) throw fail("ECANCELLED");
  for (const s of signals) s.addEventListener("abort", abort, { once: true });
  let timer: ReturnType<typeof setTimeout> | undefined;
  let timedOut = false;
  try {
    const stopped = new Promise<never>((_, reject) => {
      controller.signal.addEventListener("abort", () =>
        reject(
          timedOut
            ? fail("ETIMEOUT", { detail: `no answer within ${timeout} ms` })
            : fail("ECANCELLED"),
        ), { once: true });
      timer = setTimeout(() => {
        timedOut = true;
        controller.abort();
      }, timeout);
    });
    const ex = await Promise.race([
      backend.exchange(query, { pvd, signal: controller.signal }),
      stopped,
    ]);
    if (ex.unknownPvd !== undefined) {
      throw fail("EREFUSED", { detail: `"${ex.unknownPvd}" is not a known PvD` });
    }
    if (!ex.reply) {
      throw fail("ETIMEOUT", { detail: "the query was dropped (pvdns is overloaded)" });
    }
    const answeredBy = ex.pvd ?? pvd;
    const rcode = ex.reply.length >= 4 ? ex.reply[3]! & 0xf : -1;
    if (rcode !== Rcode.NOERROR) {
      throw new DnsError(RCODE_ERRORS[rcode] ?? "EBADRESP", {
        hostname,
        syscall,
        pvd: answeredBy,
      });
    }
    let records: DecodedAnswer["records"];
    try {
      records = (decodeMessage(ex.reply).answers ?? []) as DecodedAnswer["records"];
    } catch (e) {
      throw fail("EBADRESP", { cause: e });
    }
    if (!records.some((r) => r.type === type)) {
      throw new DnsError("ENODATA", { hostname, syscall, pvd: answeredBy });
    }
    return { records, pvd: answeredBy, source: ex.source };
  } catch (e) {
    if (e instanceof DnsError) throw e;
    if (e instanceof ControlError && e.status === 0) {
      throw fail("ECONNREFUSED", { detail: e.message, cause: e });
    }
    if (controller.signal.aborted) {
      throw timedOut ? fail("ETIMEOUT", { cause: e }) : fail("ECANCELLED", { cause: e });
    }
    throw e;
  } finally {
    clearTimeout(timer);
    for (const s of signals) s.removeEventListener("abort", abort);
  }
}

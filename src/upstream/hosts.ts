/**
 * Host names of a PvD's `https://HOST/PATH` servers, looked up through that PvD's own Do53
 * servers only (never the host's resolver, never another PvD). Answers are kept for their TTL (at
 * least 5 s); identical lookups in flight share one query; and the addresses learned are handed
 * to the one leak guard, so that only this PvD may connect there.
 *
 * @module
 */

import type { LeakGuard } from "../policy/leak_guard.ts";
import type { ServerConfig } from "../config/types.ts";
import type { StoredResponse } from "../dns/response.ts";
import type { UpstreamQuestion } from "./types.ts";
import { Type } from "../dns/wire.ts";
import { answerAddresses } from "../dns/query.ts";

/** Answers for a server's host are kept at least this long, s. */
const MIN_HOST_TTL_S = 5;

/** Options of {@linkcode UpstreamHostLookups}. */
export interface UpstreamHostLookupsOptions {
  /** The PvD. */
  readonly pvd: string;
  /** Asks the PvD's own Do53 servers. */
  readonly ask: (question: UpstreamQuestion) => Promise<StoredResponse>;
  /** Learns the addresses found (the leak guard). */
  readonly guard: Pick<LeakGuard, "learn">;
  /** Clock, ms. */
  readonly now: () => number;
}

/** The host lookups of one PvD's DoH servers. */
export class UpstreamHostLookups {
  #options: UpstreamHostLookupsOptions;
  #hosts = new Map<string, { addresses: string[]; expires: number }>();
  #lookups = new Map<string, Promise<string[]>>();

  /** Creates the lookups; nothing is asked until {@linkcode resolve}. */
  constructor(options: UpstreamHostLookupsOptions) {
    this.#options = options;
  }

  /** The addresses of `host` for `server` (A or AAAA by the server's family). */
  resolve(server: ServerConfig, host: string, signal: AbortSignal): Promise<string[]> {
    const { ask, guard, now, pvd } = this.#options;
    const key = `${host}|${server.family ?? 4}`;
    const cached = this.#hosts.get(key);
    if (cached && cached.expires > now()) return Promise.resolve(cached.addresses);
    let pending = this.#lookups.get(key);
    if (!pending) {
      const qtype = server.family === 6 ? Type.AAAA : Type.A;
      pending = ask({ qname: `${host}.`, qtype, qclass: 1, do: false, cd: false })
        .then((response) => {
          const addresses = answerAddresses(response.wire, qtype);
          const ttl = Math.max(response.ttl, MIN_HOST_TTL_S);
          if (addresses.length) {
            this.#hosts.set(key, { addresses, expires: now() + ttl * 1000 });
            // The one leak guard learns them: only this PvD may now connect there.
            for (const a of addresses) guard.learn(pvd, a, server.port);
          }
          return addresses;
        })
        .finally(() => this.#lookups.delete(key));
      this.#lookups.set(key, pending);
    }
    return abortable(pending, signal);
  }
}

/** Resolves like `promise`, or rejects when `signal` aborts first. */
function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/**
 * {@linkcode PvdBackend}: what a `PvdResolver` (resolver.ts) runs over (one DNS exchange routed by
 * pvdns, and the PvDs), and {@linkcode stubBackend}, the backend over a stub in this process.
 * The backend over a daemon's control API is in remote.ts.
 *
 * @module
 */

import type { PvdEvent } from "../pvd/registry.ts";
import { normalizePvdId } from "../config/values.ts";
import { type PvdChange, type PvdInfo, pvdInfo } from "../pvd/pvd_info.ts";
import type { AnswerSource } from "../dns/response.ts";
import type { Stub } from "../service/stub.ts";

/** What one exchange through a backend gave. */
export interface Exchange {
  /** The reply; null when the query was dropped (pvdns overloaded). */
  readonly reply: Uint8Array | null;
  /** The PvD that answered; undefined when pvdns answered itself. */
  readonly pvd?: string | undefined;
  /** Where the answer came from. */
  readonly source?: AnswerSource | undefined;
  /** Set instead of a reply when the PvD asked for is not known. */
  readonly unknownPvd?: string | undefined;
}

/** Options of {@linkcode PvdBackend.exchange}. */
export interface ExchangeOptions {
  /** Ask in this PvD (explicit choice: rules do not apply). */
  readonly pvd?: string | undefined;
  /** Abort the exchange. */
  readonly signal?: AbortSignal | undefined;
}

/**
 * What a {@linkcode PvdResolver} runs over: one DNS exchange routed by pvdns, and the PvDs.
 *
 * @example A backend over a stub in this process
 * ```ts ignore
 * const resolver = new PvdResolver(stubBackend(stub));
 * ```
 */
export interface PvdBackend {
  /** Runs one wire-format query through pvdns, in `pvd` when given. */
  exchange(query: Uint8Array, options: ExchangeOptions): Promise<Exchange>;
  /** The PvDs in force. */
  listPvds(): Promise<PvdInfo[]>;
  /** One PvD, or undefined. */
  getPvd(id: string): Promise<PvdInfo | undefined>;
  /**
   * Calls `onChange` for every change of the PvD set (and first with every PvD as `added` when
   * `initial`); resolves once subscribed, with the function that unsubscribes. `onError` is
   * called when the subscription ends on its own (remote: the connection was lost).
   */
  subscribe(
    onChange: (changes: readonly PvdChange[]) => void,
    options: { readonly initial: boolean; readonly onError: (e: unknown) => void },
  ): Promise<() => void>;
  /** Releases what the backend holds (connections). */
  close(): Promise<void>;
}

/** The API client address for routing: none, so client-prefix rules and routing do not apply. */
const API_CLIENT = { address: "", port: 0, transport: "api" as const };

/**
 * A backend over a {@linkcode Stub} running in this process.
 *
 * @example
 * ```ts ignore
 * const stub = await createStub(config);
 * const resolver = new PvdResolver(stubBackend(stub));
 * ```
 */
export function stubBackend(stub: Stub): PvdBackend {
  const find = (id: string) => stub.pvds.find((p) => p.id === normalizePvdId(id));
  return {
    async exchange(query, options) {
      if (options.pvd !== undefined && !find(options.pvd)) {
        return { reply: null, unknownPvd: normalizePvdId(options.pvd) };
      }
      let answered: { pvd?: string | undefined; source?: AnswerSource } = {};
      const reply = await stub.handle(query, API_CLIENT, {
        explicitPvd: options.pvd === undefined ? undefined : normalizePvdId(options.pvd),
        onAnswer: (a) => answered = { pvd: a.pvd, source: a.source },
      });
      return { reply, ...answered };
    },
    listPvds: () => Promise.resolve(stub.pvds.map(pvdInfo)),
    getPvd(id) {
      const p = find(id);
      return Promise.resolve(p ? pvdInfo(p) : undefined);
    },
    subscribe(onChange, options) {
      const unsubscribe = stub.onPvdChange((events: readonly PvdEvent[]) =>
        onChange(events.map((e) => ({ type: e.type, pvd: pvdInfo(e.pvd) })))
      );
      if (options.initial) {
        onChange(stub.pvds.map((p) => ({ type: "added" as const, pvd: pvdInfo(p) })));
      }
      return Promise.resolve(unsubscribe);
    },
    close: () => Promise.resolve(),
  };
}

/**
 * The running service: the per-PvD state (caches, upstreams), the leak guard, the pipeline, and
 * the DNS listeners. {@linkcode createStub} starts it from a validated config.
 *
 * @module
 */

import { LeakGuard } from "../policy/leak_guard.ts";
import { checkRoutes } from "../policy/route_check.ts";
import { Router } from "../policy/router.ts";
import type { IpRunner } from "../pvd/ip_command.ts";
import { PvdCache } from "./cache.ts";
import type { Config, ListenerConfig } from "./config_types.ts";
import { type DnsListener, startTcpListener, startUdpListener } from "./listeners.ts";
import { type Answer, buildPipeline, type ClientInfo } from "./pipeline.ts";
import { renderResponse } from "./response.ts";
import { PvdUpstreams } from "./upstream.ts";
import { parseQuery, type Query } from "./wire.ts";

/** Options of {@linkcode createStub}. */
export interface StubOptions {
  /** Clock in ms. @default Date.now */
  readonly now?: () => number;
  /** Where log lines go. @default console.error */
  readonly log?: (line: string) => void;
  /** Runs `ip -j …` for route checks. @default the `ip` command */
  readonly runIp?: IpRunner;
  /** How often strictRoutes PvDs are checked again, ms. @default 10000 */
  readonly routeCheckMs?: number;
}

/** A running pvdns. */
export interface Stub {
  /** The configuration it runs with. */
  readonly config: Config;
  /** Bound DNS listeners (`ADDR:PORT` with the real port). */
  readonly listening: readonly string[];
  /** The leak guard (its counters). */
  readonly guard: LeakGuard;
  /** Queries a rule's fallback sent to a second PvD, keyed `from->to`. */
  readonly fallbacks: ReadonlyMap<string, number>;
  /** Answers one wire-format query as if it came from `client`; null when it is dropped. */
  handle(raw: Uint8Array, client: ClientInfo, options?: HandleOptions): Promise<Uint8Array | null>;
  /** Runs one parsed query through the pipeline. */
  resolve(query: Query, client: ClientInfo, explicitPvd?: string): Promise<Answer>;
  /** Stops listeners and closes upstream sockets. */
  close(): Promise<void>;
}

/** Options of {@linkcode Stub.handle}. */
export interface HandleOptions {
  readonly listener?: ListenerConfig | undefined;
  readonly explicitPvd?: string | undefined;
}

/**
 * Starts pvdns: binds every listener, builds every PvD's cache and upstreams.
 *
 * @example Usage
 * ```ts ignore
 * import { parseConfig } from "./config.ts";
 * const stub = await createStub(parseConfig(await Deno.readTextFile("pvdns.jsonc")));
 * console.log(stub.listening);
 * await stub.close();
 * ```
 */
export async function createStub(config: Config, options: StubOptions = {}): Promise<Stub> {
  const now = options.now ?? Date.now;
  const log = options.log ?? ((line: string) => console.error(line));
  const guard = new LeakGuard(config.pvds, {
    onBlocked: (pvd, dst, src, why) =>
      log(`pvdns: leak guard refused a send for PvD ${pvd} to ${dst} from ${src}: ${why}`),
  });
  const fallbacks = new Map<string, number>();
  const caches = new Map(
    config.pvds.map((p) => [p.id, new PvdCache({ maxEntries: config.cache.maxEntries })]),
  );
  const upstreams = new Map(
    config.pvds.map((p) => [
      p.id,
      new PvdUpstreams(p, { upstream: config.upstream, cache: config.cache, guard, now }),
    ]),
  );
  const pipeline = buildPipeline({
    router: new Router({ pvds: config.pvds, rules: config.rules }),
    caches,
    upstreams,
    servfailTtl: config.cache.servfailTtl,
    now,
    onUpstreamFailure: (_pvd, e) => log(`pvdns: ${e.message}`),
    onFallback: (from, to) => {
      const key = `${from}->${to}`;
      fallbacks.set(key, (fallbacks.get(key) ?? 0) + 1);
    },
  });

  // strictRoutes: check each such PvD's routes now and every routeCheckMs; fail closed on a miss.
  const strict = config.pvds.filter((p) => p.strictRoutes);
  const lastVerdict = new Map<string, string>();
  const recheck = async () => {
    for (const p of strict) {
      for (const r of await checkRoutes(p, options.runIp)) {
        upstreams.get(p.id)?.setBlocked(r.server, r.ok ? undefined : r.detail);
        const verdict = r.ok ? "ok" : r.detail;
        if (lastVerdict.get(`${p.id} ${r.server}`) !== verdict) {
          lastVerdict.set(`${p.id} ${r.server}`, verdict);
          if (!r.ok) log(`pvdns: PvD ${p.id}: strictRoutes: not using ${r.detail}`);
          else if (lastVerdict.size > 0) log(`pvdns: PvD ${p.id}: route ok: ${r.detail}`);
        }
      }
    }
  };
  let routeTimer: ReturnType<typeof setInterval> | undefined;
  if (strict.length) {
    await recheck();
    routeTimer = setInterval(
      () => recheck().catch((e) => log(`pvdns: route check: ${e}`)),
      options.routeCheckMs ?? 10_000,
    );
  }

  let inFlight = 0;
  const resolve = (
    query: Query,
    client: ClientInfo,
    explicitPvd?: string,
    listener?: ListenerConfig,
  ) => pipeline({ query, client, listener, explicitPvd, now: now() });

  const handle = async (
    raw: Uint8Array,
    client: ClientInfo,
    opts: HandleOptions = {},
  ): Promise<Uint8Array | null> => {
    const parsed = parseQuery(raw);
    if (parsed.kind === "drop") return null;
    if (parsed.kind === "error") return parsed.reply;
    if (inFlight >= config.limits.maxInFlight) return null; // bounded: shed load, clients retry
    inFlight++;
    try {
      const q = parsed.query;
      const answer = await resolve(q, client, opts.explicitPvd, opts.listener);
      const maxSize = client.transport === "udp" ? (q.edns ? q.edns.udpSize : 512) : 65535;
      return renderResponse(answer.response, q, now(), maxSize);
    } catch (e) {
      log(`pvdns: internal error for ${parsed.query.qname}: ${(e as Error).stack ?? e}`);
      return null;
    } finally {
      inFlight--;
    }
  };

  const listeners: DnsListener[] = [];
  try {
    for (const l of config.listen) {
      const udp = startUdpListener(l, handle, log);
      listeners.push(udp);
      // Port 0 asks the kernel; TCP then takes the port UDP got, so one address serves both.
      const tcp = startTcpListener({ ...l, port: udp.port }, handle, config.limits, log);
      listeners.push(tcp);
    }
  } catch (e) {
    for (const l of listeners) await l.close();
    throw e;
  }

  return {
    config,
    guard,
    fallbacks,
    listening: listeners.filter((_, i) => i % 2 === 0).map((l) => l.text),
    handle,
    resolve: (q, c, p) => resolve(q, c, p),
    async close() {
      clearInterval(routeTimer);
      for (const l of listeners) await l.close();
      for (const u of upstreams.values()) await u.close();
    },
  };
}

/**
 * The running service: the live set of PvDs (caches, upstreams, router), the leak guard, the
 * pipeline, and the DNS listeners. {@linkcode createStub} starts it from a validated config;
 * {@linkcode Stub.reload} moves it to another one without dropping queries.
 *
 * @module
 */

import { LeakGuard } from "../policy/leak_guard.ts";
import { SPOOF_BURST } from "../transports/transport.ts";
import { PvdRegistry } from "../pvd/registry.ts";
import type { Config } from "../config/types.ts";
import type { ClientInfo } from "../listen/listener.ts";
import { mmsgAvailable } from "../listen/udp_mmsg.ts";
import { buildPipeline } from "./pipeline.ts";
import { type PvdChanges, PvdSet } from "./pvd_set.ts";
import { ResolverMetrics } from "./metrics.ts";
import { QueryServer } from "./query_server.ts";
import { ListenerSet } from "./listener_set.ts";
import { PvdChangeFeed } from "./pvd_changes.ts";
import { Registry } from "prom-client";
import type { CloseOptions, HandleOptions, ReloadResult, Stub, StubOptions } from "./stub_types.ts";

export type * from "./stub_types.ts";

/**
 * Starts pvdns: binds every listener, builds every PvD's cache and upstreams.
 *
 * @example Usage
 * ```ts ignore
 * import { parseConfig } from "../config/parse.ts";
 * const stub = await createStub(parseConfig(await Deno.readTextFile("pvdns.jsonc")));
 * console.log(stub.listening);
 * await stub.close();
 * ```
 */
export async function createStub(initial: Config, options: StubOptions = {}): Promise<Stub> {
  const now = options.now ?? Date.now;
  const log = options.log ?? ((line: string) => console.error(line));
  let config = initial;
  const guard = new LeakGuard([], {
    onBlocked: (pvd, dst, src, why) =>
      log(`pvdns: leak guard refused a send for PvD ${pvd} to ${dst} from ${src}: ${why}`),
  });
  const fallbacks = new Map<string, number>();
  // Read when Prometheus scrapes, by which time every part below exists.
  const promRegistry = options.registry ?? new Registry();
  const metrics = new ResolverMetrics(promRegistry, {
    pvds: () => pvds.pvds,
    cacheEntries: () => new Map([...pvds.state.caches].map(([id, c]) => [id, c.size])),
    cacheBytes: () => new Map([...pvds.state.caches].map(([id, c]) => [id, c.bytes])),
    leakBlocked: () => guard.blocked,
    fallbacks: () => fallbacks,
    zoneClaims: () => pvds.state.router.claims,
  }, options.version ?? "dev");
  const pvds = new PvdSet({
    guard,
    now,
    log,
    runIp: options.runIp,
    routeCheckMs: options.routeCheckMs,
    onExchange: (pvd, server, seconds, reason) =>
      metrics.upstream(pvd, server.text, server.protocol, seconds, reason),
    onLimit: (name) => metrics.limit(name),
    onEncryption: (pvd, event) => {
      if (event === "fallback") return metrics.encryptedFallback(pvd);
      log(
        event === "plain"
          ? `pvdns: PvD ${pvd}: every encrypted server is down; asking its Do53 servers in clear ` +
            `(encryption "prefer") until one is back`
          : `pvdns: PvD ${pvd}: an encrypted server is back; no more Do53 in clear`,
      );
    },
    onRebindBlocked: (pvd, records) => metrics.rebindBlocked(pvd, records),
    onUnexpectedAnswer: (pvd, server, burstPorts) => {
      metrics.unexpectedAnswer(pvd);
      // Never the query name: the line says where, not what was asked.
      if (burstPorts > 0) {
        log(
          `pvdns: PvD ${pvd}: ${burstPorts} upstream port(s) to ${server.text} took ` +
            `${SPOOF_BURST} or more answers that matched no query: someone may be forging answers`,
        );
      }
    },
  });
  const registry = new PvdRegistry(config);
  // Reloads and discovery updates are applied one at a time, in order.
  const changes = new PvdChangeFeed(pvds, registry);
  await pvds.apply(registry.effective());

  const pipeline = buildPipeline({
    metrics,
    state: pvds.state,
    get servfailTtl() {
      return config.cache.servfailTtl;
    },
    get serveStale() {
      return config.cache.serveStale;
    },
    now,
    onUpstreamFailure: (_pvd, e) => log(`pvdns: ${e.message}`),
    onFallback: (from, to) => {
      const key = `${from}->${to}`;
      fallbacks.set(key, (fallbacks.get(key) ?? 0) + 1);
    },
  });

  const server = new QueryServer({ config, pipeline, metrics, now, log });
  const serve = server.serve;
  const onLimit = (name: string) => metrics.limit(name);
  const handle = (raw: Uint8Array, client: ClientInfo, opts?: HandleOptions) =>
    Promise.resolve(serve(raw, client, opts));

  // Read when a connection comes or a bound is checked, so that a reload applies at once.
  const tcpLimits = {
    get tcpConnections() {
      return config.limits.tcpConnections;
    },
    get tcpIdleMs() {
      return config.limits.tcpIdleMs;
    },
    get tcpReadMs() {
      return config.limits.tcpReadMs;
    },
    get tcpPipeline() {
      return config.limits.tcpPipeline;
    },
  };
  const wanted = options.udpListener ?? "auto";
  const listeners = new ListenerSet({
    handler: serve,
    tcpLimits,
    batched: wanted === "mmsg" || (wanted === "auto" && mmsgAvailable()),
    log,
    onLimit,
  });
  try {
    await listeners.open(config.listen);
  } catch (e) {
    await pvds.close();
    throw e;
  }

  return {
    get config() {
      return config;
    },
    get pvds() {
      return pvds.pvds;
    },
    guard,
    fallbacks,
    registry: promRegistry,
    metrics,
    flush(pvd) {
      let dropped = 0;
      for (const [id, cache] of pvds.state.caches) {
        if (pvd !== undefined && id !== pvd) continue;
        dropped += cache.size;
        cache.clear();
      }
      return dropped;
    },
    get listening() {
      return listeners.listening;
    },
    handle,
    resolve: (q, c, p) => Promise.resolve(server.resolve(q, c, p)),
    async reload(next: Config): Promise<ReloadResult> {
      // Bind new listeners first: if one fails, nothing has changed yet.
      const bound = await listeners.bindNew(next.listen);
      let pvdChanges: PvdChanges;
      try {
        pvdChanges = await changes.apply(() => registry.setConfig(next));
      } catch (e) {
        await listeners.discard(bound);
        throw e;
      }
      config = next;
      server.setConfig(next);
      const { added, removed } = await listeners.commit(next.listen, bound);
      return { ...pvdChanges, listenersAdded: added, listenersRemoved: removed };
    },
    setDiscovered(origin, discovered) {
      return changes.apply(() => registry.setDiscovered(origin, discovered));
    },
    onPvdChange(listener) {
      return changes.subscribe(listener);
    },
    get inFlight() {
      return server.inFlight;
    },
    async close(closeOptions: CloseOptions = {}) {
      await changes.settled();
      const stopped = listeners.stop();
      const drainMs = closeOptions.drainMs ?? 0;
      if (drainMs > 0) {
        const answered = server.idle();
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([
          // Every answer rendered, every TCP connection written out; then one turn of the event
          // loop so that the last UDP answers leave before their socket closes.
          Promise.all([answered, ...stopped]).then(() => new Promise((r) => setTimeout(r, 0))),
          new Promise((r) => timer = setTimeout(r, drainMs)),
        ]);
        clearTimeout(timer);
        server.forgetIdle();
      }
      await listeners.close();
      await pvds.close();
    },
  };
}

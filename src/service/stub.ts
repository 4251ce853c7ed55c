/**
 * The running service: the live set of PvDs (caches, upstreams, router), the leak guard, the
 * pipeline, and the DNS listeners. {@linkcode createStub} starts it from a validated config;
 * {@linkcode Stub.reload} moves it to another one without dropping queries.
 *
 * @module
 */

import { LeakGuard } from "../policy/leak_guard.ts";
import { SPOOF_BURST } from "../transports/transport.ts";
import { AdmissionControl } from "../policy/admission.ts";
import { type PvdEvent, PvdRegistry } from "../pvd/registry.ts";
import type { Config, ListenerConfig } from "../config/types.ts";
import type { ClientInfo, DnsListener, ListenerSlot, QueryHandler } from "../listen/listener.ts";
import { startUdpListener } from "../listen/udp.ts";
import { startTcpListener } from "../listen/tcp.ts";
import { type Answer, buildPipeline } from "./pipeline.ts";
import { type PvdChanges, PvdSet } from "./pvd_set.ts";
import { ResolverMetrics } from "./metrics.ts";
import { mmsgAvailable, startMmsgUdpListener } from "../listen/udp_mmsg.ts";
import { localResponse, renderResponse } from "../dns/response.ts";
import { Registry } from "prom-client";
import { parseQuery, type Query, Rcode } from "../dns/wire.ts";
import type { CloseOptions, HandleOptions, ReloadResult, Stub, StubOptions } from "./stub_types.ts";

export type * from "./stub_types.ts";

/** Shared by every query that comes without options (an object per query is GC work). */
const NO_OPTIONS: HandleOptions = Object.freeze({});

/** A listener's sockets and the config it serves with (updated in place on reload). */
interface OpenListener {
  readonly udp: DnsListener;
  readonly tcp: DnsListener;
  readonly slot: ListenerSlot;
}

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
  const listeners = new Set<(events: readonly PvdEvent[]) => void>();
  // Reloads and discovery updates are applied one at a time, in order.
  let applying: Promise<unknown> = Promise.resolve();
  const apply = (change: () => void): Promise<PvdChanges> => {
    const run = applying.then(async () => {
      const before = new Map(pvds.pvds.map((p) => [p.id, p]));
      change();
      const result = await pvds.apply(registry.effective());
      const after = new Map(pvds.pvds.map((p) => [p.id, p]));
      const events: PvdEvent[] = [
        ...result.added.map((id) => ({ type: "added" as const, pvd: after.get(id)! })),
        ...result.changed.map((id) => ({ type: "changed" as const, pvd: after.get(id)! })),
        ...result.removed.map((id) => ({ type: "removed" as const, pvd: before.get(id)! })),
      ];
      if (events.length) { for (const l of listeners) l(events); }
      return result;
    });
    applying = run.catch(() => {});
    return run;
  };
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

  let inFlight = 0;
  const perClient = new Map<string, number>(); // in-flight queries per client address
  let admission = new AdmissionControl(config);
  const onLimit = (name: string) => metrics.limit(name);
  let idle: (() => void) | undefined; // told when the last in-flight query is done (drain)
  const resolve = (
    query: Query,
    client: ClientInfo,
    explicitPvd?: string,
    listener?: ListenerConfig,
  ) => pipeline({ query, client, listener, explicitPvd, now: now() });
  const render = (answer: Answer, q: Query, transport: ClientInfo["transport"], t0?: number) => {
    const maxSize = transport === "udp" ? (q.edns ? q.edns.udpSize : 512) : 65535;
    const seconds = t0 === undefined ? undefined : (performance.now() - t0) / 1000;
    metrics.response(answer.pvd, answer.response.rcode, answer.source, seconds);
    return renderResponse(answer.response, q, now(), maxSize);
  };
  const failed = (q: Query) => (e: unknown) => {
    log(`pvdns: internal error for ${q.qname}: ${(e as Error).stack ?? e}`);
    return null;
  };

  /** Answers now when it can (a cache hit, a local answer); a promise only for upstream work. */
  const serve = (
    raw: Uint8Array,
    client: ClientInfo,
    opts: HandleOptions = NO_OPTIONS,
  ): ReturnType<QueryHandler> => {
    const parsed = parseQuery(raw);
    if (parsed.kind === "drop") return null;
    if (parsed.kind === "error") {
      metrics.request(client.transport, -1);
      metrics.response(undefined, parsed.rcode & 0xf, "local");
      return parsed.reply;
    }
    const q = parsed.query;
    metrics.request(client.transport, q.qtype);
    if (!admission.open) {
      const verdict = admission.admit(client.address, client.transport, now());
      if (verdict !== "ok") {
        return refuse(q, client, verdict === "refuse" ? "acl" : "rate_limit", verdict);
      }
    }
    // Bounded: past a bound a UDP query is dropped (the client retries), a TCP one refused.
    if (inFlight >= config.limits.maxInFlight) return refuse(q, client, "in_flight");
    const mine = perClient.get(client.address) ?? 0;
    if (mine >= config.limits.maxInFlightPerClient && client.address !== "") {
      return refuse(q, client, "client_in_flight");
    }
    let answer: Answer | Promise<Answer>;
    try {
      answer = resolve(q, client, opts.explicitPvd, opts.listener);
    } catch (e) {
      return failed(q)(e);
    }
    if (!(answer instanceof Promise)) {
      opts.onAnswer?.(answer);
      return render(answer, q, client.transport);
    }
    inFlight++;
    perClient.set(client.address, mine + 1);
    const t0 = performance.now();
    // One reaction for both outcomes (not then + finally: a promise less on every miss's path).
    const settled = () => {
      inFlight--;
      const left = perClient.get(client.address)! - 1;
      if (left > 0) perClient.set(client.address, left);
      else perClient.delete(client.address);
      if (inFlight === 0) idle?.();
    };
    return answer.then((a) => {
      try {
        opts.onAnswer?.(a);
        return render(a, q, client.transport, t0);
      } catch (e) {
        return failed(q)(e);
      } finally {
        settled();
      }
    }, (e) => {
      settled();
      return failed(q)(e);
    });
  };
  /** A query past a bound or outside the allow list: counted; REFUSED, TC or nothing. */
  const refuse = (
    q: Query,
    client: ClientInfo,
    limit: string,
    verdict: "refuse" | "drop" | "slip" = client.transport === "udp" ? "drop" : "refuse",
  ): Uint8Array | null => {
    onLimit(limit);
    if (verdict === "drop") return null;
    const t = now();
    const rcode = verdict === "refuse" ? Rcode.REFUSED : Rcode.NOERROR;
    metrics.response(undefined, rcode, "policy");
    // A slip is an empty reply with TC set (rendered with no room): a real client retries on TCP.
    return renderResponse(localResponse(q, rcode, t), q, t, verdict === "slip" ? 0 : 65535);
  };
  const handle = (raw: Uint8Array, client: ClientInfo, opts: HandleOptions = NO_OPTIONS) =>
    Promise.resolve(serve(raw, client, opts));

  const open = new Map<string, OpenListener>(); // keyed by the configured text
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
  const batched = wanted === "mmsg" || (wanted === "auto" && mmsgAvailable());
  const openListener = (l: ListenerConfig, index: number): OpenListener => {
    try {
      return bindListener(l);
    } catch (e) {
      throw bindFailure(e, `listen[${index}] ${JSON.stringify(l.text)}`);
    }
  };
  const bindListener = (l: ListenerConfig): OpenListener => {
    const slot: ListenerSlot = { listener: l };
    const udp = batched
      ? startMmsgUdpListener(slot, serve, log)
      : startUdpListener(slot, serve, log);
    try {
      // Port 0 asks the kernel; TCP then takes the port UDP got, so one address serves both.
      const tcp = startTcpListener(slot, serve, tcpLimits, log, onLimit, udp.port);
      return { udp, tcp, slot };
    } catch (e) {
      udp.close();
      throw e;
    }
  };
  const closeListener = async (o: OpenListener) => {
    await o.udp.close();
    await o.tcp.close();
  };
  try {
    config.listen.forEach((l, i) => open.set(l.text, openListener(l, i)));
  } catch (e) {
    for (const o of open.values()) await closeListener(o);
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
      return [...open.values()].map((o) => o.udp.text);
    },
    handle,
    resolve: (q, c, p) => Promise.resolve(resolve(q, c, p)),
    async reload(next: Config): Promise<ReloadResult> {
      // Bind new listeners first: if one fails, nothing has changed yet.
      const fresh = new Map<string, OpenListener>();
      try {
        next.listen.forEach((l, i) => {
          if (!open.has(l.text)) fresh.set(l.text, openListener(l, i));
        });
      } catch (e) {
        for (const o of fresh.values()) await closeListener(o);
        throw e;
      }
      let changes: PvdChanges;
      try {
        changes = await apply(() => registry.setConfig(next));
      } catch (e) {
        for (const o of fresh.values()) await closeListener(o);
        throw e;
      }
      config = next;
      admission = new AdmissionControl(next);
      const listenersRemoved: string[] = [];
      const wanted = new Map(next.listen.map((l) => [l.text, l]));
      for (const [text, o] of open) {
        const l = wanted.get(text);
        if (l) o.slot.listener = l; // a new PvD binding applies from the next query
        else {
          open.delete(text);
          listenersRemoved.push(text);
          await closeListener(o);
        }
      }
      for (const [text, o] of fresh) open.set(text, o);
      return { ...changes, listenersAdded: [...fresh.keys()], listenersRemoved };
    },
    setDiscovered(origin, discovered) {
      return apply(() => registry.setDiscovered(origin, discovered));
    },
    onPvdChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    get inFlight() {
      return inFlight;
    },
    async close(closeOptions: CloseOptions = {}) {
      await applying;
      const stopped = [...open.values()].flatMap((o) => [o.udp.stop(), o.tcp.stop()]);
      const drainMs = closeOptions.drainMs ?? 0;
      if (drainMs > 0) {
        const answered = inFlight === 0 ? Promise.resolve() : new Promise<void>((r) => idle = r);
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([
          // Every answer rendered, every TCP connection written out; then one turn of the event
          // loop so that the last UDP answers leave before their socket closes.
          Promise.all([answered, ...stopped]).then(() => new Promise((r) => setTimeout(r, 0))),
          new Promise((r) => timer = setTimeout(r, drainMs)),
        ]);
        clearTimeout(timer);
        idle = undefined;
      }
      for (const o of open.values()) await closeListener(o);
      open.clear();
      await pvds.close();
    },
  };
}

/**
 * A bind error that names the config field and address (`listen[1] "192.0.2.99:53": cannot
 * bind: …`), of the same class as the runtime's, so callers can still tell "address in use" from
 * the rest.
 */
function bindFailure(e: unknown, field: string): Error {
  if (!(e instanceof Error)) return new Error(`${field}: cannot bind: ${String(e)}`);
  const hint = e instanceof Deno.errors.AddrNotAvailable ? " (not an address of this host)" : "";
  const Kind = e.constructor as new (message: string, options?: ErrorOptions) => Error;
  try {
    return new Kind(`${field}: cannot bind: ${e.message}${hint}`, { cause: e });
  } catch {
    return new Error(`${field}: cannot bind: ${e.message}${hint}`, { cause: e });
  }
}

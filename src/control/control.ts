/**
 * The control API (HTTP, served by http_listener.ts) and the plain metrics listener.
 *
 * Control, on a Unix socket (mode 0660: file permissions decide who may use it) or on a
 * loopback TCP address (every request needs `Authorization: Bearer TOKEN`, else 401):
 *
 * | endpoint                        | what                                                          |
 * | ------------------------------- | ------------------------------------------------------------- |
 * | `GET /v1/pvds`                  | `{ "pvds": [PvdInfo…] }`                                      |
 * | `GET /v1/pvds/{id}`             | one PvdInfo                                                   |
 * | `GET /v1/events[?initial=1]`    | PvD changes as server-sent events (`event: added` …)          |
 * | `GET /v1/resolve?name=&type=&pvd=` | one query as `application/dns-json`, with `pvd` and `source` |
 * | `GET/POST /dns-query?pvd=`      | RFC 8484 DoH; `pvdns-pvd` / `pvdns-source` response headers   |
 * | `POST /v1/reload`               | read the config file again; what was added/changed/removed    |
 * | `POST /v1/cache/flush?pvd=`     | empty one PvD's cache or all; `{ "flushed": N }`              |
 * | `GET /healthz`                  | `{ "status": "ok", … }`                                       |
 * | `GET /metrics`                  | Prometheus text exposition                                    |
 *
 * Errors are RFC 9457 problem documents (`application/problem+json`) whose `detail` names the
 * bad value. Metrics, on their own listener, answer only `GET /metrics`, without a token.
 *
 * Bounds: each listener holds at most `limits.httpConnections` connections, with the
 * header, idle and request timers of http_listener.ts; a request body is refused with 413 when
 * its `Content-Length` is over the endpoint's bound (65,535 bytes for DoH, `limits.httpBodyBytes`
 * for the others) before a byte is read, and cut at the bound while it streams. The token is
 * checked first: without it a request gets 401 and its body is never read.
 *
 * This file holds the options, the routes, the bearer-token check and the event stream; the DNS
 * endpoints are in control/dns_query.ts, problem documents in http_problem.ts, the listener in
 * http_listener.ts.
 *
 * @module
 */

import type { ReloadResult, Stub } from "../service/stub.ts";
import { isLoopback, parseListenAddress } from "../config/schema.ts";
import { normalizePvdId } from "../config/values.ts";
import { pvdInfo } from "../pvd/pvd_info.ts";
import { type DnsEndpointContext, dnsQuery, resolveJson, stubExchange } from "./dns_query.ts";
import { type HttpLimits, type HttpListener, serveOn } from "./http_listener.ts";
import { json, problem } from "./http_problem.ts";
import { declaredBodyProblem } from "./http_body.ts";

export type { HttpLimits, HttpListener } from "./http_listener.ts";

/** What asking the daemon to reload gave. */
export type ReloadOutcome =
  | { readonly ok: true; readonly result: ReloadResult }
  | { readonly ok: false; readonly errors: readonly string[] };

/** Options of {@linkcode startControl}. */
export interface ControlOptions {
  /** `unix:/PATH` or `ADDR:PORT` on loopback (port 0: the kernel picks). */
  readonly listen: string;
  /** Required on TCP: the bearer token every request must carry. */
  readonly token?: string | undefined;
  /** Reloads the config file; absent when the daemon runs without one (→ 409). */
  readonly reload?: (() => Promise<ReloadOutcome>) | undefined;
  /** Reported by `/healthz`. @default "dev" */
  readonly version?: string;
}

/** What the metrics listener serves: a prom-client `Registry` is one. */
export interface MetricsSource {
  /** The text exposition. */
  metrics(): Promise<string>;
  /** Its content type. */
  readonly contentType: string;
}

const unknownPvd = (id: string) =>
  problem(404, "unknown-pvd", "Unknown PvD", `"${id}" is not a known PvD id`);

function timingSafeEqual(a: string, b: string): boolean {
  const x = new TextEncoder().encode(a), y = new TextEncoder().encode(b);
  if (x.length !== y.length) return false;
  let diff = 0;
  for (let i = 0; i < x.length; i++) diff |= x[i]! ^ y[i]!;
  return diff === 0;
}

/**
 * The control API as a request handler (exported for tests; {@linkcode startControl} serves it).
 *
 * @example
 * ```ts ignore
 * const handler = controlHandler(stub, { listen: "unix:/run/pvdns.sock" });
 * const res = await handler(new Request("http://localhost/v1/pvds"));
 * ```
 */
export function controlHandler(
  stub: Stub,
  options: Omit<ControlOptions, "listen"> & { readonly requireToken?: boolean },
): { handler: (req: Request) => Promise<Response>; closeStreams(): void } {
  const streams = new Set<() => void>();
  const known = (id: string) => stub.pvds.some((p) => p.id === normalizePvdId(id));

  const pvdParam = (params: URLSearchParams): string | undefined | Response => {
    const pvd = params.get("pvd");
    if (pvd === null || pvd === "") return undefined;
    return known(pvd) ? normalizePvdId(pvd) : unknownPvd(pvd);
  };

  const dns: DnsEndpointContext = { exchange: stubExchange(stub), pvdParam };

  function events(params: URLSearchParams): Response {
    const encoder = new TextEncoder();
    let stop = () => {};
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        const send = (type: string, data: unknown) =>
          controller.enqueue(encoder.encode(`event: ${type}\ndata: ${JSON.stringify(data)}\n\n`));
        const unsubscribe = stub.onPvdChange((changes) => {
          for (const c of changes) send(c.type, pvdInfo(c.pvd));
        });
        // A comment now and then: a client that went away is noticed when the write fails.
        const keepalive = setInterval(() => {
          try {
            controller.enqueue(encoder.encode(": keepalive\n\n"));
          } catch {
            stop();
          }
        }, 15_000);
        stop = () => {
          unsubscribe();
          clearInterval(keepalive);
          streams.delete(stop);
          try {
            controller.close();
          } catch { /* already closed */ }
        };
        streams.add(stop);
        controller.enqueue(encoder.encode(": subscribed\n\n"));
        if (params.get("initial") === "1" || params.get("initial") === "true") {
          for (const p of stub.pvds) send("added", pvdInfo(p));
        }
      },
      cancel() {
        stop();
      },
    });
    return new Response(body, {
      headers: { "content-type": "text/event-stream", "cache-control": "no-store" },
    });
  }

  async function reload(): Promise<Response> {
    if (!options.reload) {
      return problem(
        409,
        "no-config-file",
        "Nothing to reload",
        "pvdns was started without --config (the embedded default); there is no file to read again",
      );
    }
    const outcome = await options.reload();
    if (outcome.ok) return json(outcome.result);
    return problem(
      422,
      "reload-refused",
      "Configuration refused",
      `the config file was refused; still serving the previous config: ${outcome.errors[0] ?? ""}`,
      { errors: outcome.errors },
    );
  }

  const routes: {
    method: string[];
    path: RegExp;
    run: (req: Request, url: URL, m: RegExpExecArray) => Promise<Response> | Response;
    /** The route reads its body with its own bound (DoH: 65,535 bytes). */
    ownBodyBound?: boolean;
  }[] = [
    {
      method: ["GET"],
      path: /^\/healthz$/,
      run: () =>
        json({
          status: "ok",
          version: options.version ?? "dev",
          pvds: stub.pvds.length,
          listening: stub.listening,
        }),
    },
    {
      method: ["GET"],
      path: /^\/metrics$/,
      run: async () =>
        new Response(await stub.registry.metrics(), {
          headers: { "content-type": stub.registry.contentType },
        }),
    },
    { method: ["GET"], path: /^\/v1\/pvds\/?$/, run: () => json({ pvds: stub.pvds.map(pvdInfo) }) },
    {
      method: ["GET"],
      path: /^\/v1\/pvds\/([^/]+)$/,
      run: (_req, _url, m) => {
        const id = decodeURIComponent(m[1]!);
        const p = stub.pvds.find((p) => p.id === normalizePvdId(id));
        return p ? json(pvdInfo(p)) : unknownPvd(id);
      },
    },
    { method: ["GET"], path: /^\/v1\/events$/, run: (_req, url) => events(url.searchParams) },
    {
      method: ["GET"],
      path: /^\/v1\/resolve$/,
      run: (_req, url) => resolveJson(dns, url.searchParams),
    },
    {
      method: ["GET", "POST"],
      path: /^\/dns-query$/,
      run: (req, url) => dnsQuery(dns, req, url.searchParams),
      ownBodyBound: true,
    },
    { method: ["POST"], path: /^\/v1\/reload$/, run: () => reload() },
    {
      method: ["POST"],
      path: /^\/v1\/cache\/flush$/,
      run: (_req, url) => {
        const pvd = pvdParam(url.searchParams);
        if (pvd instanceof Response) return pvd;
        return json({ flushed: stub.flush(pvd), pvd: pvd ?? null });
      },
    },
  ];

  async function handler(req: Request): Promise<Response> {
    if (options.requireToken) {
      const auth = req.headers.get("authorization") ?? "";
      const m = /^Bearer\s+(\S+)$/i.exec(auth);
      if (!m || options.token === undefined || !timingSafeEqual(m[1]!, options.token)) {
        return problem(
          401,
          "unauthorized",
          "Unauthorized",
          auth
            ? "the bearer token is not the one in control.token"
            : "the Authorization: Bearer header is missing",
          {},
          { "www-authenticate": 'Bearer realm="pvdns"' },
        );
      }
    }
    let url: URL;
    try {
      url = new URL(req.url);
    } catch {
      return problem(400, "bad-request", "Bad request", `"${req.url}" is not a URL`);
    }
    const matching = routes.map((r) => ({ r, m: r.path.exec(url.pathname) })).filter((x) => x.m);
    if (matching.length === 0) {
      return problem(404, "not-found", "Not found", `${url.pathname}: no such endpoint`);
    }
    const hit = matching.find((x) =>
      x.r.method.includes(req.method) || (req.method === "HEAD" && x.r.method.includes("GET"))
    );
    if (!hit) {
      const allow = [...new Set(matching.flatMap((x) => x.r.method))].join(", ");
      return problem(
        405,
        "method-not-allowed",
        "Method not allowed",
        `${req.method} ${url.pathname}: use ${allow}`,
        {},
        { allow },
      );
    }
    if (!hit.r.ownBodyBound) {
      const tooLarge = declaredBodyProblem(req, stub.config.limits.httpBodyBytes ?? 65536);
      if (tooLarge) return tooLarge;
    }
    try {
      return await hit.r.run(req, url, hit.m!);
    } catch (e) {
      return problem(500, "internal", "Internal error", (e as Error).message);
    }
  }

  return {
    handler,
    closeStreams() {
      for (const stop of [...streams]) stop();
    },
  };
}

/**
 * Starts the control API on `options.listen`.
 *
 * @throws {Error} when the address cannot be bound, is TCP without a token, or TCP not on
 *   loopback, or the socket is served by another process
 * @example
 * ```ts ignore
 * const control = await startControl(stub, { listen: "unix:/run/pvdns.sock", version: "0.1.0" });
 * console.log(control.url);
 * await control.close();
 * ```
 */
export async function startControl(stub: Stub, options: ControlOptions): Promise<HttpListener> {
  const tcp = !options.listen.startsWith("unix:");
  if (tcp) {
    const a = parseListenAddress(options.listen);
    if (!isLoopback(a.address)) {
      throw new Error(
        `control.listen ${options.listen}: the control API listens on loopback or a unix: socket only`,
      );
    }
    if (!options.token) {
      throw new Error(`control.listen ${options.listen}: TCP needs control.token`);
    }
  }
  const { handler, closeStreams } = controlHandler(stub, { ...options, requireToken: tcp });
  return await serveOn({
    listen: options.listen,
    handler,
    limits: stub.config.limits,
    onLimit: (limit) => stub.metrics.limit(limit),
    beforeClose: closeStreams,
  });
}

/** Options of {@linkcode startMetrics}. */
export interface MetricsListenerOptions {
  /** Connection bounds and timers (`limits` of the config). @default the config's defaults */
  readonly limits?: HttpLimits | undefined;
  /** Told each time a bound is reached (`stub.metrics.limit`). */
  readonly onLimit?: ((limit: string) => void) | undefined;
}

/**
 * Serves `GET /metrics` (Prometheus text exposition of `registry`) on `listen`, without a token,
 * like CoreDNS's `:9153`.
 *
 * @example
 * ```ts ignore
 * const metrics = await startMetrics(stub.registry, "127.0.0.1:9153", {
 *   limits: stub.config.limits,
 *   onLimit: (limit) => stub.metrics.limit(limit),
 * });
 * ```
 */
export async function startMetrics(
  registry: MetricsSource,
  listen: string,
  options: MetricsListenerOptions = {},
): Promise<HttpListener> {
  const handler = async (req: Request) => {
    const path = new URL(req.url).pathname;
    if (path !== "/metrics") {
      return new Response("not found: pvdns serves /metrics here\n", { status: 404 });
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      return new Response("use GET\n", { status: 405, headers: { allow: "GET, HEAD" } });
    }
    return new Response(await registry.metrics(), {
      headers: { "content-type": registry.contentType },
    });
  };
  return await serveOn({ listen, handler, limits: options.limits, onLimit: options.onLimit });
}

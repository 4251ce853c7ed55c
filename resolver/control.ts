/**
 * The control API (HTTP, `Deno.serve`) and the plain metrics listener.
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
 * @module
 */

import type { ReloadResult, Stub } from "./stub.ts";
import { parseListenAddress } from "./config_schema.ts";
import { parseQueryName, parseQueryType, toDnsJson } from "./dns_json.ts";
import { normalizePvdId, pvdInfo } from "./pvd_info.ts";
import type { Answer } from "./pipeline.ts";
import { buildUpstreamQuery, parseQuery } from "./wire.ts";

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

/** A running HTTP listener. */
export interface HttpListener {
  /** Where it listens: `unix:/run/pvdns.sock` or `http://127.0.0.1:5380` (the real port). */
  readonly url: string;
  /** Stops it (open event streams are ended first). */
  close(): Promise<void>;
}

const JSON_TYPE = "application/json";
const PROBLEM_TYPE = "application/problem+json";
const DNS_MESSAGE = "application/dns-message";
const API_CLIENT = { address: "", port: 0, transport: "api" as const };

/** An RFC 9457 problem response. */
function problem(
  status: number,
  kind: string,
  title: string,
  detail: string,
  extra: Record<string, unknown> = {},
  headers: Record<string, string> = {},
): Response {
  return new Response(
    JSON.stringify(
      { type: `urn:pvdns:problem:${kind}`, title, status, detail, ...extra },
      null,
      2,
    ) +
      "\n",
    { status, headers: { "content-type": PROBLEM_TYPE, ...headers } },
  );
}

function json(body: unknown, contentType = JSON_TYPE): Response {
  return new Response(JSON.stringify(body, null, 2) + "\n", {
    headers: { "content-type": contentType },
  });
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

function base64urlDecode(text: string): Uint8Array {
  if (!/^[A-Za-z0-9_-]*={0,2}$/.test(text)) throw new Error("not base64url");
  const b64 = text.replace(/=+$/, "").replace(/-/g, "+").replace(/_/g, "/");
  const bin = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

/** Reads a boolean query parameter (`1`/`true`/`0`/`false`); undefined when absent. */
function flag(params: URLSearchParams, name: string): boolean | Response {
  const v = params.get(name);
  if (v === null || v === "" || v === "0" || v === "false") return false;
  if (v === "1" || v === "true") return true;
  return problem(400, "bad-request", "Bad request", `${name}: "${v}" is not 0, 1, true or false`);
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

  /** One query through the stub, as the DNS listeners would answer it. */
  const exchange = async (raw: Uint8Array, pvd: string | undefined) => {
    let answer: Answer | undefined;
    const reply = await stub.handle(raw, API_CLIENT, {
      explicitPvd: pvd === undefined ? undefined : normalizePvdId(pvd),
      onAnswer: (a) => answer = a,
    });
    return { reply, answer };
  };

  const pvdParam = (params: URLSearchParams): string | undefined | Response => {
    const pvd = params.get("pvd");
    if (pvd === null || pvd === "") return undefined;
    return known(pvd) ? normalizePvdId(pvd) : unknownPvd(pvd);
  };

  async function resolveJson(params: URLSearchParams): Promise<Response> {
    const name = params.get("name");
    if (name === null) {
      return problem(400, "bad-name", "Bad domain name", "name: the query parameter is missing");
    }
    let qname: string, qtype: number;
    try {
      qname = parseQueryName(name);
    } catch (e) {
      return problem(400, "bad-name", "Bad domain name", `name: ${(e as Error).message}`);
    }
    try {
      qtype = parseQueryType(params.get("type") ?? "A");
    } catch (e) {
      return problem(400, "bad-type", "Bad record type", `type: ${(e as Error).message}`);
    }
    const pvd = pvdParam(params);
    if (pvd instanceof Response) return pvd;
    const dnssecOk = flag(params, "do"), cd = flag(params, "cd");
    if (dnssecOk instanceof Response) return dnssecOk;
    if (cd instanceof Response) return cd;
    const query = buildUpstreamQuery({
      id: Math.floor(Math.random() * 0x10000),
      qname,
      qtype,
      qclass: 1,
      do: dnssecOk,
      cd,
    });
    const { reply, answer } = await exchange(query, pvd);
    if (!reply) return problem(503, "overloaded", "Overloaded", "pvdns dropped the query (busy)");
    return json(
      toDnsJson(reply, { pvd: answer?.pvd, source: answer?.source }),
      "application/dns-json",
    );
  }

  async function dnsQuery(req: Request, params: URLSearchParams): Promise<Response> {
    const pvd = pvdParam(params);
    if (pvd instanceof Response) return pvd;
    let raw: Uint8Array;
    if (req.method === "GET") {
      const dns = params.get("dns");
      if (dns === null) {
        return problem(400, "bad-request", "Bad request", "dns: the query parameter is missing");
      }
      try {
        raw = base64urlDecode(dns);
      } catch {
        return problem(
          400,
          "bad-request",
          "Bad request",
          `dns: "${dns.slice(0, 40)}" is not base64url`,
        );
      }
    } else {
      const type = req.headers.get("content-type")?.split(";")[0]?.trim();
      if (type !== DNS_MESSAGE) {
        return problem(
          415,
          "unsupported-media-type",
          "Unsupported media type",
          `content-type: "${type ?? ""}" is not ${DNS_MESSAGE}`,
        );
      }
      raw = new Uint8Array(await req.arrayBuffer());
      if (raw.length > 65535) {
        return problem(413, "too-large", "Message too large", `${raw.length} bytes is over 65535`);
      }
    }
    const parsed = parseQuery(raw);
    if (parsed.kind === "drop") {
      return problem(400, "bad-request", "Bad request", `not a DNS query: ${parsed.reason}`);
    }
    const { reply, answer } = await exchange(raw, pvd);
    if (!reply) return problem(503, "overloaded", "Overloaded", "pvdns dropped the query (busy)");
    const headers: Record<string, string> = { "content-type": DNS_MESSAGE };
    if (answer?.pvd) headers["pvdns-pvd"] = answer.pvd;
    if (answer?.source) headers["pvdns-source"] = answer.source;
    try {
      // RFC 8484 §5.1: freshness no longer than the smallest TTL of the answer.
      const j = toDnsJson(reply, {});
      const ttls = [...j.Answer, ...(j.Authority ?? [])].map((r) => r.TTL);
      headers["cache-control"] = `max-age=${ttls.length ? Math.min(...ttls) : 0}`;
    } catch { /* an error reply without records */ }
    return new Response(reply as Uint8Array<ArrayBuffer>, { headers });
  }

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
    { method: ["GET"], path: /^\/v1\/resolve$/, run: (_req, url) => resolveJson(url.searchParams) },
    {
      method: ["GET", "POST"],
      path: /^\/dns-query$/,
      run: (req, url) => dnsQuery(req, url.searchParams),
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

/** True when something accepts connections on the Unix socket `path`. */
async function socketLive(path: string): Promise<boolean> {
  try {
    const conn = await Deno.connect({ transport: "unix", path });
    conn.close();
    return true;
  } catch {
    return false;
  }
}

/** Serves `handler` on `listen` (`unix:/PATH` or `ADDR:PORT`); resolves once bound. */
async function serveOn(
  listen: string,
  handler: (req: Request) => Promise<Response>,
  beforeClose: () => void = () => {},
): Promise<HttpListener> {
  let server: Deno.HttpServer;
  let url: string;
  const onError = (e: unknown) =>
    problem(500, "internal", "Internal error", (e as Error).message ?? String(e));
  if (listen.startsWith("unix:")) {
    const path = listen.slice("unix:".length);
    const existing = await Deno.lstat(path).catch(() => undefined);
    if (existing) {
      if (!existing.isSocket) {
        throw new Deno.errors.AlreadyExists(`${path} exists and is not a socket`);
      }
      if (await socketLive(path)) {
        throw new Deno.errors.AddrInUse(`${path}: another process already serves this socket`);
      }
      await Deno.remove(path); // left behind by a process that is gone
    }
    server = Deno.serve({ path, onListen: () => {}, onError }, handler);
    await Deno.chmod(path, 0o660);
    url = listen;
  } else {
    const a = parseListenAddress(listen);
    const bound = await new Promise<Deno.NetAddr>((resolve, reject) => {
      try {
        server = Deno.serve({
          hostname: a.address,
          port: a.port,
          onListen: (addr) => resolve(addr as Deno.NetAddr),
          onError,
        }, handler);
      } catch (e) {
        reject(e);
      }
    });
    url = `http://${a.address.includes(":") ? `[${a.address}]` : a.address}:${bound.port}`;
  }
  let closing: Promise<void> | undefined;
  return {
    url,
    close() {
      closing ??= (async () => {
        beforeClose();
        await server.shutdown();
      })();
      return closing;
    },
  };
}

const isLoopback = (address: string) => address === "::1" || address.startsWith("127.");

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
  return await serveOn(options.listen, handler, closeStreams);
}

/**
 * Serves `GET /metrics` (Prometheus text exposition of `registry`) on `listen`, without a token,
 * like CoreDNS's `:9153`.
 *
 * @example
 * ```ts ignore
 * const metrics = await startMetrics(stub.registry, "127.0.0.1:9153");
 * ```
 */
export async function startMetrics(registry: MetricsSource, listen: string): Promise<HttpListener> {
  return await serveOn(listen, async (req) => {
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
  });
}

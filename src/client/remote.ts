/**
 * {@linkcode connect}: the library from another process, over the control API of a running
 * pvdns (a Unix socket, or loopback TCP with a bearer token). Resolution goes through the DoH
 * endpoint (`POST /dns-query?pvd=`), so the answer is the very bytes pvdns would send a DNS
 * client; the PvD and source come back in `pvdns-pvd` / `pvdns-source` headers.
 *
 * @module
 */

import type { PvdChange, PvdInfo } from "../pvd/pvd_info.ts";
import type { DnsJson } from "../dns/json.ts";
import type { AnswerSource } from "../dns/response.ts";
import { ControlError, type Problem } from "./errors.ts";
import type { PvdBackend } from "./backend.ts";
import { PvdResolver, type PvdResolverOptions } from "./resolver.ts";

/** Where the daemon's control API is when nothing says otherwise. */
export const DEFAULT_CONTROL = "unix:/run/pvdns.sock";

/** Options of {@linkcode connect}. */
export interface ConnectOptions extends PvdResolverOptions {
  /** The bearer token of a TCP control listener (`control.token` in the daemon's config). */
  readonly token?: string | undefined;
}

/** What `POST /v1/reload` reports. */
export interface ReloadReport {
  /** PvDs that are new. */
  readonly added: readonly string[];
  /** PvDs whose description changed (their cache was emptied). */
  readonly changed: readonly string[];
  /** PvDs that are gone. */
  readonly removed: readonly string[];
  /** DNS listeners opened. */
  readonly listenersAdded: readonly string[];
  /** DNS listeners closed. */
  readonly listenersRemoved: readonly string[];
}

/** What `GET /healthz` reports. */
export interface Health {
  /** Always `ok` when it answers. */
  readonly status: "ok";
  /** The daemon's version. */
  readonly version: string;
  /** How many PvDs are in force. */
  readonly pvds: number;
  /** Its DNS listeners. */
  readonly listening: readonly string[];
}

/**
 * A {@linkcode PvdResolver} talking to a pvdns daemon, plus the operator calls of the control
 * API (what `pvdns query`, `pvdns flush`, `pvdns stats` use).
 *
 * @example
 * ```ts ignore
 * const pvdns = connect("unix:/run/pvdns.sock");
 * console.log(await pvdns.resolve4("www.example.org", { pvd: "home.example.net" }));
 * await pvdns.close();
 * ```
 */
export class ControlClient extends PvdResolver {
  #http: HttpTarget;

  /** Use {@linkcode connect}. */
  constructor(http: HttpTarget, options: PvdResolverOptions = {}) {
    super(remoteBackend(http), options);
    this.#http = http;
  }

  /** The control API's URL as given (`unix:/run/pvdns.sock`, `http://127.0.0.1:5380`). */
  get url(): string {
    return this.#http.url;
  }

  /**
   * `GET /v1/resolve`: one query as `application/dns-json`, with the PvD and source.
   *
   * @example
   * ```ts ignore
   * const json = await pvdns.resolveJson("www.example.org", "AAAA", { pvd: "home.example.net" });
   * console.log(json.Status, json.Answer, json.pvd);
   * ```
   */
  async resolveJson(
    name: string,
    type = "A",
    options: { pvd?: string | undefined; signal?: AbortSignal } = {},
  ): Promise<DnsJson> {
    const q = new URLSearchParams({ name, type });
    if (options.pvd !== undefined) q.set("pvd", options.pvd);
    return await (await this.#http.request(`/v1/resolve?${q}`, { signal: options.signal })).json();
  }

  /**
   * `POST /v1/cache/flush`: empties one PvD's cache, or all; returns how many entries went.
   *
   * @example
   * ```ts ignore
   * await pvdns.flush("vpn.example.com");
   * ```
   */
  async flush(pvd?: string): Promise<number> {
    const q = pvd === undefined ? "" : `?${new URLSearchParams({ pvd })}`;
    const body = await (await this.#http.request(`/v1/cache/flush${q}`, { method: "POST" }))
      .json();
    return body.flushed;
  }

  /**
   * `POST /v1/reload`: makes the daemon read its config file again.
   *
   * @throws {ControlError} with `problem.errors` when the file was refused
   * @example
   * ```ts ignore
   * const { added, changed, removed } = await pvdns.reload();
   * ```
   */
  async reload(): Promise<ReloadReport> {
    return await (await this.#http.request("/v1/reload", { method: "POST" })).json();
  }

  /**
   * `GET /healthz`.
   *
   * @example
   * ```ts ignore
   * console.log((await pvdns.health()).version);
   * ```
   */
  async health(): Promise<Health> {
    return await (await this.#http.request("/healthz")).json();
  }

  /**
   * `GET /metrics`: the Prometheus text exposition.
   *
   * @example
   * ```ts ignore
   * console.log(await pvdns.metrics());
   * ```
   */
  async metrics(): Promise<string> {
    return await (await this.#http.request("/metrics")).text();
  }
}

/**
 * Connects to a running pvdns's control API. Nothing is sent until the first call; a daemon
 * that is not running makes calls fail with a {@linkcode ControlError} of `status` 0 (and
 * resolutions with `ECONNREFUSED`).
 *
 * @param url `unix:/PATH` for the Unix socket, or `http://127.0.0.1:5380` (`127.0.0.1:5380`)
 * @param options the bearer token of a TCP listener, the resolution timeout
 * @throws {TypeError} when `url` is neither
 *
 * @example Resolve in a PvD from another process
 * ```ts ignore
 * import { connect } from "./mod.ts";
 *
 * const pvdns = connect("http://127.0.0.1:5380", { token: Deno.env.get("PVDNS_TOKEN") });
 * for (const pvd of await pvdns.listPvds()) console.log(pvd.id, pvd.sourceAddresses);
 * const addresses = await pvdns.resolve4("git.corp.example.com", { pvd: "vpn.example.com" });
 * await pvdns.close();
 * ```
 */
export function connect(url: string, options: ConnectOptions = {}): ControlClient {
  return new ControlClient(httpTarget(url, options.token), options);
}

/** How requests reach the daemon. */
interface HttpTarget {
  readonly url: string;
  /** Sends a request; throws {@linkcode ControlError} unless the answer is 2xx. */
  request(path: string, init?: RequestInit): Promise<Response>;
  close(): void;
}

function httpTarget(url: string, token: string | undefined): HttpTarget {
  let base: string;
  let client: Deno.HttpClient | undefined;
  if (url.startsWith("unix:")) {
    const path = url.slice("unix:".length);
    if (!path.startsWith("/")) throw new TypeError(`"${url}": a unix: URL needs an absolute path`);
    client = Deno.createHttpClient({ proxy: { transport: "unix", path } });
    base = "http://localhost";
  } else {
    const text = /^https?:\/\//.test(url) ? url : `http://${url}`;
    try {
      base = new URL(text).origin;
    } catch {
      throw new TypeError(`"${url}" is not a control API URL (unix:/PATH or http://ADDR:PORT)`);
    }
  }
  return {
    url,
    async request(path, init = {}) {
      const headers = new Headers(init.headers);
      if (token !== undefined) headers.set("authorization", `Bearer ${token}`);
      let res: Response;
      try {
        res = await fetch(`${base}${path}`, { ...init, headers, ...(client ? { client } : {}) });
      } catch (e) {
        if (init.signal?.aborted) throw e;
        throw new ControlError(
          `cannot reach pvdns at ${url}: ${(e as Error).message}`,
          0,
          undefined,
          e,
        );
      }
      if (res.ok) return res;
      const text = await res.text();
      let problem: Problem | undefined;
      try {
        problem = JSON.parse(text);
      } catch { /* not a problem document */ }
      throw new ControlError(
        `${url}${path.replace(/\?.*$/, "")}: ${res.status} ${problem?.detail ?? text.trim()}`,
        res.status,
        problem,
      );
    },
    close() {
      client?.close();
    },
  };
}

const UNKNOWN_PVD = "urn:pvdns:problem:unknown-pvd";

function remoteBackend(http: HttpTarget): PvdBackend {
  return {
    async exchange(query, options) {
      const q = options.pvd === undefined ? "" : `?${new URLSearchParams({ pvd: options.pvd })}`;
      let res: Response;
      try {
        res = await http.request(`/dns-query${q}`, {
          method: "POST",
          headers: { "content-type": "application/dns-message", accept: "application/dns-message" },
          body: query as Uint8Array<ArrayBuffer>,
          signal: options.signal,
        });
      } catch (e) {
        if (e instanceof ControlError && e.problem?.type === UNKNOWN_PVD) {
          return { reply: null, unknownPvd: options.pvd };
        }
        if (e instanceof ControlError && e.status === 503) return { reply: null };
        throw e;
      }
      return {
        reply: new Uint8Array(await res.arrayBuffer()),
        pvd: res.headers.get("pvdns-pvd") ?? undefined,
        source: (res.headers.get("pvdns-source") ?? undefined) as AnswerSource | undefined,
      };
    },
    async listPvds() {
      return (await (await http.request("/v1/pvds")).json()).pvds;
    },
    async getPvd(id) {
      try {
        return await (await http.request(`/v1/pvds/${encodeURIComponent(id)}`)).json() as PvdInfo;
      } catch (e) {
        if (e instanceof ControlError && e.status === 404) return undefined;
        throw e;
      }
    },
    async subscribe(onChange, options) {
      const controller = new AbortController();
      const res = await http.request(`/v1/events${options.initial ? "?initial=1" : ""}`, {
        headers: { accept: "text/event-stream" },
        signal: controller.signal,
      });
      // Read `event: TYPE` / `data: JSON` blocks until the stream ends or we unsubscribe.
      (async () => {
        const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        try {
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            buffer += value;
            let end: number;
            while ((end = buffer.indexOf("\n\n")) >= 0) {
              const block = buffer.slice(0, end);
              buffer = buffer.slice(end + 2);
              const type = /^event: (.*)$/m.exec(block)?.[1];
              const data = /^data: (.*)$/m.exec(block)?.[1];
              if ((type === "added" || type === "changed" || type === "removed") && data) {
                onChange([{ type, pvd: JSON.parse(data) } as PvdChange]);
              }
            }
          }
          if (!controller.signal.aborted) {
            options.onError(new ControlError(`${http.url}: the event stream ended`, 0));
          }
        } catch (e) {
          if (!controller.signal.aborted) options.onError(e);
        }
      })();
      return () => controller.abort();
    },
    close() {
      http.close();
      return Promise.resolve();
    },
  };
}

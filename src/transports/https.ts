/**
 * DNS over HTTPS (RFC 8484) with undici: `POST PATH` with an `application/dns-message` body, over
 * HTTP/2 when the server offers it (ALPN `h2` first, HTTP/1.1 otherwise), connections kept and
 * reused by one undici `Agent` per transport, bound to the PvD's source address
 * (`new Agent({ localAddress })`: under Deno `connect: { localAddress }` is silently ignored).
 *
 * Two server forms (config syntax in DESIGN.md):
 * - `https://ADDR[:PORT]/PATH#AUTH-NAME`: connect to ADDR; the certificate must carry AUTH-NAME,
 *   which is also the SNI and the HTTP `:authority`.
 * - `https://HOST[:PORT]/PATH`: HOST is looked up with the injected `resolve`, which the PvD's
 *   upstreams answer through that PvD's own Do53 servers only (never the host's resolver, never
 *   another PvD); the connection goes to the address found, with HOST as SNI and authority.
 *
 * Every request passes the leak guard with the address it goes to, and so does every connection
 * undici opens. A certificate failure is reason `tls`, an HTTP status other than 2xx or a body of
 * another type is reason `http`; nothing is ever retried in clear.
 *
 * @module
 */

import { Agent, buildConnector, request } from "undici";
import type { Socket } from "node:net";
import { LeakBlockedError } from "../policy/leak_guard.ts";
import type { ServerConfig } from "../config/types.ts";
import { answersQuery } from "../dns/query.ts";
import { trustAnchors } from "./_trust.ts";
import { readBounded } from "./bounded_body.ts";
import { padMessage, QUERY_BLOCK } from "../dns/padding.ts";
import {
  abortError,
  type ExchangeOptions,
  hostPort,
  type SendGuard,
  socketError,
  type Transport,
  TransportError,
  type TransportOptions,
} from "./transport.ts";

/** Looks a DoH server's host name up; resolves with its addresses (of the source's family). */
export type HostResolver = (host: string, signal: AbortSignal) => Promise<readonly string[]>;

/** Options of {@linkcode HttpsTransport}. */
export interface HttpsTransportOptions extends TransportOptions {
  /** Extra trust anchors (PEM texts) besides the system's roots: the PvD's `caFile`. */
  readonly ca?: readonly string[];
  /** Required for `https://HOST/PATH`: the lookup through the same PvD's Do53 servers. */
  readonly resolve?: HostResolver;
  /** Connections per server address (HTTP/1.1; HTTP/2 multiplexes on one). @default 2 */
  readonly maxConnections?: number;
  /** An idle connection is closed after this long, ms. @default 10000 */
  readonly idleMs?: number;
}

const MEDIA_TYPE = "application/dns-message";

/**
 * DoH to one server of one PvD.
 *
 * @example Usage
 * ```ts ignore
 * const server = parseServer("https://192.0.2.1/dns-query#dns.example.net");
 * const doh = new HttpsTransport({ pvd: "home", server, source: "192.0.2.10", guard });
 * const answer = await doh.exchange(query, { signal: AbortSignal.timeout(2000) });
 * await doh.close();
 * ```
 */
export class HttpsTransport implements Transport {
  /** Always `"https"`. */
  readonly protocol = "https" as const;
  /** The server. */
  readonly server: ServerConfig;
  /** The bound local address. */
  readonly source: string;
  #pvd: string;
  #guard: SendGuard;
  #resolve: HostResolver | undefined;
  #authority: string;
  #agent: Agent;
  /** Every socket undici opened, so that close() also ends one still in its TLS handshake. */
  #sockets = new Set<Socket>();
  #closed = false;

  /** Creates the transport; the first exchange opens the first connection. */
  constructor(options: HttpsTransportOptions) {
    const { server } = options;
    const name = server.authName ?? server.host;
    if (!name) throw new TypeError("A DoH server needs an authentication name");
    if (!server.address && !options.resolve) {
      throw new TypeError(`DoH server ${server.text} names a host but no resolver was given`);
    }
    this.server = server;
    this.source = options.source;
    this.#pvd = options.pvd;
    this.#guard = options.guard;
    this.#resolve = options.resolve;
    this.#authority = server.port === 443 ? name : `${name}:${server.port}`;
    const connector = buildConnector({
      servername: name,
      ca: trustAnchors(options.ca),
      rejectUnauthorized: true,
      allowH2: true,
      preferH2: true,
    });
    const idleMs = options.idleMs ?? 10_000;
    this.#agent = new Agent({
      localAddress: this.source,
      allowH2: true,
      connections: options.maxConnections ?? 2,
      keepAliveTimeout: idleMs,
      keepAliveMaxTimeout: idleMs,
      // Every connection undici opens passes the leak guard first.
      connect: (opts, callback) => {
        try {
          if (opts.localAddress !== this.source) {
            throw new TransportError("leak", `DoH connection not bound to ${this.source}`);
          }
          this.#guard.check(this.#pvd, opts.hostname, Number(opts.port) || 443, this.source);
        } catch (e) {
          callback(e as Error, null);
          return;
        }
        // The connector returns its socket (typed void): kept so close() can end a handshake.
        const socket = (connector as unknown as (...a: Parameters<typeof connector>) => Socket)(
          opts,
          callback,
        );
        this.#sockets.add(socket);
        socket.once("close", () => this.#sockets.delete(socket));
        return socket;
      },
    });
  }

  /** POSTs `query` and resolves with the answer, carrying the query's ID. */
  async exchange(query: Uint8Array, { signal }: ExchangeOptions): Promise<Uint8Array> {
    if (this.#closed) throw new TransportError("closed", `${this.server.text}: transport closed`);
    if (signal.aborted) throw abortError(signal);
    const address = this.server.address ?? await this.#lookUp(signal);
    const port = this.server.port;
    this.#guard.check(this.#pvd, address, port, this.source); // every send
    // RFC 8484 §4.1: ID 0 on the wire; the caller's ID is put back in the answer. Padded to a
    // multiple of 128 octets (RFC 8467), so the length does not give the name away.
    const padded = padMessage(query, QUERY_BLOCK);
    const wire = padded === query ? query.slice() : padded;
    wire[0] = 0;
    wire[1] = 0;
    let status: number, type: string, body: Uint8Array;
    try {
      const res = await request(`https://${hostPort(address, port)}${this.server.path}`, {
        method: "POST",
        dispatcher: this.#agent,
        headers: { host: this.#authority, "content-type": MEDIA_TYPE, accept: MEDIA_TYPE },
        body: wire,
        signal,
      });
      status = res.statusCode;
      type = String(res.headers["content-type"] ?? "");
      const bytes = await readBounded(res.body, MAX_ANSWER);
      if (bytes === undefined) {
        throw new TransportError(
          "bad-answer",
          `${this.server.text}: the answer is longer than ${MAX_ANSWER} bytes`,
        );
      }
      body = bytes;
    } catch (e) {
      if (signal.aborted) throw abortError(signal);
      if (this.#closed) throw new TransportError("closed", `${this.server.text}: transport closed`);
      if (e instanceof TransportError || e instanceof LeakBlockedError) throw e;
      throw socketError(e, this.server.text);
    }
    if (status < 200 || status > 299) {
      throw new TransportError("http", `${this.server.text}: HTTP status ${status}`);
    }
    if (type.split(";")[0]!.trim().toLowerCase() !== MEDIA_TYPE) {
      throw new TransportError("http", `${this.server.text}: content type ${JSON.stringify(type)}`);
    }
    if (body.length > 65535 || !answersQuery(wire, body)) {
      throw new TransportError(
        "bad-answer",
        `${this.server.text}: the body does not answer the query`,
      );
    }
    body[0] = query[0]!;
    body[1] = query[1]!;
    return body;
  }

  async #lookUp(signal: AbortSignal): Promise<string> {
    let addresses: readonly string[];
    try {
      addresses = await this.#resolve!(this.server.host!, signal);
    } catch (e) {
      if (signal.aborted) throw abortError(signal);
      throw new TransportError(
        "closed",
        `${this.server.text}: cannot look up ${this.server.host}`,
        {
          cause: e,
        },
      );
    }
    const first = addresses[0];
    if (first === undefined) {
      throw new TransportError("closed", `${this.server.text}: ${this.server.host} has no address`);
    }
    return first;
  }

  /** Closes every connection; requests in flight fail with reason `closed`. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#agent.destroy().catch(() => {});
    for (const s of this.#sockets) s.destroy();
    this.#sockets.clear();
  }
}

/** The largest DNS message (RFC 8484 §6: a body is one message). */
const MAX_ANSWER = 65535;

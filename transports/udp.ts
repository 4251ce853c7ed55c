/**
 * Do53 over UDP (RFC 1035): one fresh socket per exchange, bound to the PvD's source address, so
 * every upstream query has a random source port as well as a random ID (RFC 5452). Only a
 * datagram from the server's address and port, with the query's ID and question, is accepted;
 * anything else is ignored and the wait goes on.
 *
 * @module
 */

import type { ServerConfig } from "../resolver/config_types.ts";
import { answersQuery } from "../resolver/wire.ts";
import {
  abortError,
  type ExchangeOptions,
  type SendGuard,
  type Transport,
  TransportError,
  type TransportOptions,
} from "./transport.ts";

/**
 * Largest UDP answer read. pvdns advertises 1,232 bytes upstream (RFC 9715); a longer datagram is
 * cut here and fails as a bad answer, like any other answer that does not parse.
 */
const MAX_ANSWER = 4096;

/**
 * Receive buffers kept for reuse. `DatagramConn.receive()` without a buffer allocates 64 KiB for
 * every datagram: per cache miss, that is most of pvdns's memory churn (and RSS) under load.
 */
const spareBuffers: Uint8Array[] = [];
const MAX_SPARE_BUFFERS = 64;

/** Options of {@linkcode UdpTransport}. */
export type UdpTransportOptions = TransportOptions;

/** Do53 over UDP to one server of one PvD. */
export class UdpTransport implements Transport {
  /** Always `"udp"`. */
  readonly protocol = "udp" as const;
  /** The server. */
  readonly server: ServerConfig;
  /** The bound local address. */
  readonly source: string;
  #pvd: string;
  #guard: SendGuard;
  #open = new Set<Deno.DatagramConn>();
  #closed = false;
  /**
   * A socket bound ahead of time for the next exchange: binding costs about 20 µs, which is
   * then spent while the previous query's answer is on its way rather than before a send. Each
   * socket still carries exactly one query (a fresh random port per query).
   */
  #spare: Deno.DatagramConn | undefined;

  /** Creates the transport; no socket is opened until an exchange. */
  constructor(options: UdpTransportOptions) {
    if (!options.server.address) throw new TypeError("A UDP server needs an IP address");
    this.server = options.server;
    this.source = options.source;
    this.#pvd = options.pvd;
    this.#guard = options.guard;
  }

  /** Sends `query` and waits for its answer. */
  async exchange(query: Uint8Array, { signal }: ExchangeOptions): Promise<Uint8Array> {
    const address = this.server.address!;
    const port = this.server.port;
    if (this.#closed) throw new TransportError("closed", `${this.server.text}: transport closed`);
    this.#guard.check(this.#pvd, address, port, this.source); // every send
    if (signal.aborted) throw abortError(signal);
    let conn: Deno.DatagramConn;
    try {
      conn = this.#spare ?? this.#bind();
      this.#spare = undefined;
    } catch (e) {
      throw new TransportError("closed", `cannot bind ${this.source}: ${(e as Error).message}`);
    }
    this.#open.add(conn);
    const onAbort = () => conn.close();
    signal.addEventListener("abort", onAbort, { once: true });
    const buffer = spareBuffers.pop() ?? new Uint8Array(MAX_ANSWER);
    try {
      await conn.send(query, { hostname: address, port, transport: "udp" });
      if (!this.#spare && !this.#closed) {
        try {
          this.#spare = this.#bind();
        } catch { /* the next exchange binds for itself and reports it */ }
      }
      for (;;) {
        const [data, from] = await conn.receive(buffer);
        const f = from as Deno.NetAddr;
        if (f.port === port && sameAddress(f.hostname, address) && answersQuery(query, data)) {
          return data.slice(); // the buffer goes back to the pool
        }
      }
    } catch (e) {
      if (signal.aborted) throw abortError(signal);
      if (e instanceof TransportError) throw e;
      const refused = e instanceof Deno.errors.ConnectionRefused;
      throw new TransportError(refused ? "refused" : "closed", (e as Error).message, { cause: e });
    } finally {
      if (spareBuffers.length < MAX_SPARE_BUFFERS) spareBuffers.push(buffer);
      signal.removeEventListener("abort", onAbort);
      this.#open.delete(conn);
      try {
        conn.close();
      } catch { /* already closed by abort */ }
    }
  }

  #bind(): Deno.DatagramConn {
    return Deno.listenDatagram({ hostname: this.source, port: 0, transport: "udp" });
  }

  /** Closes any socket still waiting. */
  close(): Promise<void> {
    this.#closed = true;
    this.#spare?.close();
    this.#spare = undefined;
    for (const c of this.#open) {
      try {
        c.close();
      } catch { /* already closed */ }
    }
    this.#open.clear();
    return Promise.resolve();
  }
}

function sameAddress(a: string, b: string): boolean {
  return a === b || a.toLowerCase() === b.toLowerCase() ||
    (a.startsWith("::ffff:") && a.slice(7) === b);
}

/**
 * Do53 over UDP (RFC 1035), from sockets bound to the PvD's source address, each on a random
 * port the kernel picks, and each carrying a bounded number of queries for a bounded time before
 * the next one takes over (see {@linkcode MAX_QUERIES_PER_PORT}). Every query has a random ID;
 * only a datagram from the server's address and port, with a waiting query's ID and question, is
 * accepted; anything else is ignored and the wait goes on.
 *
 * Why not one socket per query (as in pvdns 0.1): binding and closing a socket cost about 20 µs
 * of the event loop per cache miss, on the path of the answer, and the runtime's allocations
 * around each socket were about a third of the memory a cache miss left behind (issue 7). CoreDNS's
 * `forward` keeps its UDP sockets for 10 s; pvdns keeps a port for at most 64 queries or 2 s, so
 * a port an off-path attacker would have to find (RFC 5452 §9.2) is gone again soon.
 *
 * @module
 */

import type { ServerConfig } from "../resolver/config_types.ts";
import { answersQuery } from "../resolver/upstream_wire.ts";
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

/** Queries one port carries before a fresh port takes over (default). */
export const MAX_QUERIES_PER_PORT = 64;
/** How long one port takes new queries, ms (default). */
export const MAX_PORT_AGE_MS = 2000;

/** Options of {@linkcode UdpTransport}. */
export interface UdpTransportOptions extends TransportOptions {
  /** Queries one port carries. @default {MAX_QUERIES_PER_PORT} */
  readonly portQueries?: number;
  /** How long one port takes new queries, ms. @default {MAX_PORT_AGE_MS} */
  readonly portAgeMs?: number;
}

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
  #to: Deno.NetAddr;
  #limits: PortLimits;
  /** The port new queries go out from. */
  #current: PortSocket | undefined;
  /** Every port still open: the current one and retired ones still waiting for answers. */
  #open = new Set<PortSocket>();
  #closed = false;

  /** Creates the transport; no socket is opened until an exchange. */
  constructor(options: UdpTransportOptions) {
    if (!options.server.address) throw new TypeError("A UDP server needs an IP address");
    this.server = options.server;
    this.source = options.source;
    this.#pvd = options.pvd;
    this.#guard = options.guard;
    this.#to = { transport: "udp", hostname: options.server.address, port: options.server.port };
    this.#limits = {
      queries: options.portQueries ?? MAX_QUERIES_PER_PORT,
      ageMs: options.portAgeMs ?? MAX_PORT_AGE_MS,
    };
  }

  /** Sends `query` and waits for its answer. */
  exchange(query: Uint8Array, { signal }: ExchangeOptions): Promise<Uint8Array> {
    if (this.#closed) {
      return Promise.reject(new TransportError("closed", `${this.server.text}: transport closed`));
    }
    try {
      this.#guard.check(this.#pvd, this.#to.hostname, this.#to.port, this.source); // every send
    } catch (e) {
      return Promise.reject(e);
    }
    if (signal.aborted) return Promise.reject(abortError(signal));
    const id = query[0]! << 8 | query[1]!;
    let port = this.#current;
    if (!port || !port.takes(id, performance.now())) {
      port?.retire();
      try {
        port = this.#current = new PortSocket(
          this.source,
          this.#to,
          this.#limits,
          (p) => this.#open.delete(p),
        );
      } catch (e) {
        const message = `cannot bind ${this.source}: ${(e as Error).message}`;
        return Promise.reject(new TransportError("closed", message));
      }
      this.#open.add(port);
    }
    return port.exchange(id, query, signal);
  }

  /** Closes every socket; queries in flight fail. */
  close(): Promise<void> {
    this.#closed = true;
    this.#current = undefined;
    for (const p of this.#open) p.close();
    this.#open.clear();
    return Promise.resolve();
  }
}

/** When a port stops taking new queries. */
interface PortLimits {
  readonly queries: number;
  readonly ageMs: number;
}

/** A query waiting for its answer on one port. */
interface Waiter {
  readonly query: Uint8Array;
  readonly resolve: (answer: Uint8Array) => void;
  readonly reject: (error: unknown) => void;
  readonly signal: AbortSignal;
  readonly onAbort: () => void;
}

/**
 * One bound socket and the queries waiting on it, by ID. One receive is pending while any query
 * waits; a retired port takes no new query and closes once its last one is answered or gone.
 */
class PortSocket {
  #conn: Deno.DatagramConn;
  #to: Deno.NetAddr;
  #limits: PortLimits;
  #waiting = new Map<number, Waiter>();
  #buffer = new Uint8Array(MAX_ANSWER);
  #uses = 0;
  #born = performance.now();
  #reading = false;
  #retired = false;
  #closed = false;
  #onClose: (p: PortSocket) => void;

  constructor(
    source: string,
    to: Deno.NetAddr,
    limits: PortLimits,
    onClose: (p: PortSocket) => void,
  ) {
    this.#conn = Deno.listenDatagram({ hostname: source, port: 0, transport: "udp" });
    this.#to = to;
    this.#limits = limits;
    this.#onClose = onClose;
  }

  /** Whether a query with `id` may go out from this port now. */
  takes(id: number, now: number): boolean {
    return !this.#retired && this.#uses < this.#limits.queries &&
      now - this.#born < this.#limits.ageMs && !this.#waiting.has(id);
  }

  exchange(id: number, query: Uint8Array, signal: AbortSignal): Promise<Uint8Array> {
    this.#uses++;
    return new Promise<Uint8Array>((resolve, reject) => {
      const onAbort = () => {
        if (this.#waiting.get(id)?.query !== query) return;
        this.#waiting.delete(id);
        reject(abortError(signal));
        this.#closeIfDone();
      };
      this.#waiting.set(id, { query, resolve, reject, signal, onAbort });
      signal.addEventListener("abort", onAbort, { once: true });
      this.#conn.send(query, this.#to).catch((e) => this.#fail(id, query, e));
      if (!this.#reading) this.#read();
    });
  }

  retire(): void {
    this.#retired = true;
    this.#closeIfDone();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch { /* already closed */ }
    for (const [id, w] of this.#waiting) {
      this.#waiting.delete(id);
      w.signal.removeEventListener("abort", w.onAbort);
      w.reject(new TransportError("closed", "transport closed"));
    }
    this.#onClose(this);
  }

  async #read(): Promise<void> {
    this.#reading = true;
    const port = this.#to.port, address = this.#to.hostname;
    try {
      while (this.#waiting.size > 0 && !this.#closed) {
        const [data, from] = await this.#conn.receive(this.#buffer);
        const f = from as Deno.NetAddr;
        if (data.length < 12 || f.port !== port || !sameAddress(f.hostname, address)) continue;
        const id = data[0]! << 8 | data[1]!;
        const w = this.#waiting.get(id);
        if (!w || !answersQuery(w.query, data)) continue;
        this.#waiting.delete(id);
        w.signal.removeEventListener("abort", w.onAbort);
        w.resolve(data.slice()); // the buffer is read into again
      }
    } catch (e) {
      this.#retired = true; // a socket that failed once takes no new query
      for (const [id, w] of this.#waiting) this.#fail(id, w.query, e);
    } finally {
      this.#reading = false;
    }
    this.#closeIfDone();
  }

  #fail(id: number, query: Uint8Array, e: unknown): void {
    const w = this.#waiting.get(id);
    if (!w || w.query !== query) return;
    this.#waiting.delete(id);
    w.signal.removeEventListener("abort", w.onAbort);
    if (w.signal.aborted) return w.reject(abortError(w.signal));
    const refused = e instanceof Deno.errors.ConnectionRefused;
    w.reject(
      new TransportError(refused ? "refused" : "closed", (e as Error).message, { cause: e }),
    );
  }

  #closeIfDone(): void {
    if (this.#retired && this.#waiting.size === 0) this.close();
  }
}

function sameAddress(a: string, b: string): boolean {
  return a === b || a.toLowerCase() === b.toLowerCase() ||
    (a.startsWith("::ffff:") && a.slice(7) === b);
}

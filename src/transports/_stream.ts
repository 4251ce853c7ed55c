/**
 * DNS over a byte stream (RFC 7766 §8: a 2-byte length before each message), shared by Do53
 * over TCP and DoT: a small pool of connections to one server, reused across queries and
 * pipelined (several queries in flight on one connection, answered in any order), closed after
 * an idle time, reopened when the server closes one, and never more than a fixed number at once.
 *
 * Message IDs must be unique on a connection (RFC 7766 §7), and two callers may pick the same
 * one, so each query goes out under an ID that is free on its connection; the caller's ID is put
 * back in the answer. An answer is taken only when its ID and question match the query sent.
 *
 * @module
 */

import type { Socket } from "node:net";
import { tcpFrame } from "../dns/wire.ts";
import { answersQuery } from "../dns/query.ts";
import type { ServerConfig } from "../config/types.ts";
import {
  abortError,
  type ExchangeOptions,
  hostPort,
  type SendGuard,
  socketError,
  TransportError,
  type TransportOptions,
} from "./transport.ts";

/** How often a query lost to a closed connection is sent again. */
export const MAX_RESENDS = 2;

/** Limits of a {@linkcode StreamPool}. */
export interface StreamLimits {
  /** Connections open to the server at once. @default 2 */
  readonly maxConnections?: number;
  /** Queries in flight on one connection before another connection is opened. @default 32 */
  readonly pipeline?: number;
  /** A connection with nothing in flight is closed after this long, ms. @default 10000 */
  readonly idleMs?: number;
}

/** Options of {@linkcode StreamPool}. */
export interface StreamPoolOptions extends StreamLimits {
  /**
   * Opens a connection (the leak guard already passed for it): a socket that is connecting and
   * emits `ready` once it may carry DNS messages (`connect`, or `secureConnect` for TLS).
   */
  readonly open: () => { socket: Socket; ready: "connect" | "secureConnect" };
  /** The server, for messages. */
  readonly describe: string;
}

interface Pending {
  /** The query as sent (with the connection's ID). */
  readonly wire: Uint8Array;
  /** The caller's ID. */
  readonly callerId: number;
  resolve(answer: Uint8Array): void;
  reject(error: Error): void;
}

/** One connection and the queries in flight on it. */
class Connection {
  readonly socket: Socket;
  readonly pending = new Map<number, Pending>();
  ready = false;
  dead = false;
  /** Bytes received that are not yet a whole message, as they came (at most one message's). */
  #chunks: Uint8Array[] = [];
  #buffered = 0;
  #idle: ReturnType<typeof setTimeout> | undefined;
  #idleMs: number;
  #onDead: (c: Connection) => void;
  #describe: string;

  constructor(
    open: StreamPoolOptions["open"],
    idleMs: number,
    describe: string,
    onDead: (c: Connection) => void,
  ) {
    this.#idleMs = idleMs;
    this.#onDead = onDead;
    this.#describe = describe;
    const { socket, ready } = open();
    this.socket = socket;
    socket.on(ready, () => {
      this.ready = true;
      this.#armIdle();
    });
    socket.on("data", (chunk: Uint8Array) => this.#receive(chunk));
    socket.on("error", (e: Error) => this.#die(socketError(e, this.#describe)));
    // The server's FIN: whatever is still pending will not be answered on this connection.
    socket.on(
      "end",
      () => this.#die(new TransportError("closed", `${describe}: closed by server`)),
    );
    socket.on("close", () => this.#die(new TransportError("closed", `${describe}: closed`)));
  }

  /** Sends `query` on this connection; resolves with its answer (caller's ID restored). */
  submit(query: Uint8Array, signal: AbortSignal): Promise<Uint8Array> {
    if (this.dead) return Promise.reject(new TransportError("closed", `${this.#describe}: closed`));
    let id: number;
    do id = crypto.getRandomValues(new Uint16Array(1))[0]!; while (this.pending.has(id));
    const wire = query.slice();
    wire[0] = id >> 8;
    wire[1] = id & 0xff;
    const callerId = (query[0]! << 8) | query[1]!;
    clearTimeout(this.#idle);
    this.#idle = undefined;
    return new Promise<Uint8Array>((resolve, reject) => {
      const onAbort = () => {
        this.pending.delete(id);
        reject(abortError(signal));
        // A connection that never came up and now serves nobody is not worth keeping.
        if (!this.ready && this.pending.size === 0) this.destroy();
        else this.#armIdle();
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.pending.set(id, {
        wire,
        callerId,
        resolve: (a) => {
          signal.removeEventListener("abort", onAbort);
          resolve(a);
        },
        reject: (e) => {
          signal.removeEventListener("abort", onAbort);
          reject(e);
        },
      });
      this.socket.write(tcpFrame(wire)); // buffered by the socket until it is connected
    });
  }

  #receive(chunk: Uint8Array): void {
    // Chunks are kept as they came and a message is copied out once, when it is whole: joining
    // every chunk to what was buffered copied a 64 KB answer several times
    // (`bench/cache_flood.ts`).
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
    while (this.#buffered >= 2) {
      const first = this.#chunks[0]!;
      const len = first.length >= 2
        ? (first[0]! << 8) | first[1]!
        : (first[0]! << 8) | this.#chunks[1]![0]!;
      if (this.#buffered < 2 + len) break;
      this.#take(2);
      const msg = this.#take(len);
      if (msg.length < 12) continue;
      const id = (msg[0]! << 8) | msg[1]!;
      const p = this.pending.get(id);
      if (!p || !answersQuery(p.wire, msg)) continue; // not an answer to anything we asked
      this.pending.delete(id);
      msg[0] = p.callerId >> 8;
      msg[1] = p.callerId & 0xff;
      p.resolve(msg);
    }
    this.#armIdle();
  }

  /** The next `n` buffered bytes, copied out of the chunks (which are let go once used). */
  #take(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let at = 0; at < n;) {
      const c = this.#chunks[0]!;
      const k = Math.min(c.length, n - at);
      out.set(k === c.length ? c : c.subarray(0, k), at);
      at += k;
      if (k === c.length) this.#chunks.shift();
      else this.#chunks[0] = c.subarray(k);
    }
    this.#buffered -= n;
    return out;
  }

  #armIdle(): void {
    if (this.dead || this.pending.size > 0 || this.#idle !== undefined) return;
    this.#idle = setTimeout(() => this.destroy(), this.#idleMs);
  }

  #die(error: TransportError): void {
    if (this.dead) return;
    this.dead = true;
    clearTimeout(this.#idle);
    this.#idle = undefined;
    this.#onDead(this);
    const waiting = [...this.pending.values()];
    this.pending.clear();
    for (const p of waiting) p.reject(error);
    this.socket.destroy();
  }

  /** Closes the connection; whatever is in flight on it fails with reason `closed`. */
  destroy(): void {
    this.#die(new TransportError("closed", `${this.#describe}: connection closed`));
  }
}

/** Reused, pipelined, bounded connections to one server. */
export class StreamPool {
  #open: StreamPoolOptions["open"];
  #describe: string;
  #maxConnections: number;
  #pipeline: number;
  #idleMs: number;
  #connections = new Set<Connection>();
  #closed = false;
  /** Connections opened so far (for tests and metrics). */
  opened = 0;

  /** Creates the pool; nothing is opened until the first exchange. */
  constructor(options: StreamPoolOptions) {
    this.#open = options.open;
    this.#describe = options.describe;
    this.#maxConnections = options.maxConnections ?? 2;
    this.#pipeline = options.pipeline ?? 32;
    this.#idleMs = options.idleMs ?? 10_000;
    if (!(this.#maxConnections >= 1)) {
      throw new RangeError(
        `maxConnections must be at least 1: current value is ${this.#maxConnections}`,
      );
    }
  }

  /** Connections open now. */
  get size(): number {
    return this.#connections.size;
  }

  /**
   * Sends `query` on a pooled connection. A query lost because its connection closed before the
   * answer came (the server's idle close racing our send, or a server that answers only so many
   * queries per connection, RFC 7766 §6.2.1) is sent again on another connection, at most
   * {@linkcode MAX_RESENDS} times.
   */
  async exchange(query: Uint8Array, signal: AbortSignal): Promise<Uint8Array> {
    for (let attempt = 0;; attempt++) {
      if (this.#closed) throw new TransportError("closed", `${this.#describe}: transport closed`);
      if (signal.aborted) throw abortError(signal);
      const conn = this.#pick();
      try {
        return await conn.submit(query, signal);
      } catch (e) {
        const retry = attempt < MAX_RESENDS && !signal.aborted && !this.#closed &&
          e instanceof TransportError && e.reason === "closed";
        if (!retry) throw e;
      }
    }
  }

  #pick(): Connection {
    let best: Connection | undefined;
    for (const c of this.#connections) {
      if (!c.dead && (!best || c.pending.size < best.pending.size)) best = c;
    }
    if (
      best && (best.pending.size < this.#pipeline || this.#connections.size >= this.#maxConnections)
    ) {
      return best;
    }
    const conn = new Connection(
      this.#open,
      this.#idleMs,
      this.#describe,
      (c) => this.#connections.delete(c),
    );
    this.opened++;
    this.#connections.add(conn);
    return conn;
  }

  /** Closes every connection; queries in flight fail with reason `closed`. */
  close(): void {
    this.#closed = true;
    for (const c of [...this.#connections]) c.destroy();
    this.#connections.clear();
  }
}

/**
 * A transport over a {@linkcode StreamPool} to one server of one PvD: Do53 over TCP and DoT
 * differ only in how a connection is opened. The leak guard is asked before every connect and
 * before every send.
 */
export abstract class StreamTransport {
  /** The server. */
  readonly server: ServerConfig;
  /** The bound local address. */
  readonly source: string;
  #pvd: string;
  #guard: SendGuard;
  #pool: StreamPool;

  /**
   * `wire.connect` opens a socket to `address:port` from `options.source`; the guard has
   * already allowed it. `wire.name` names the wire in errors, `wire.describe` the server in logs.
   */
  protected constructor(
    options: TransportOptions & StreamLimits,
    wire: {
      readonly name: string;
      readonly describe: (hostPort: string) => string;
      readonly connect: (address: string, port: number) => ReturnType<StreamPoolOptions["open"]>;
    },
  ) {
    const { address, port } = options.server;
    if (!address) throw new TypeError(`A ${wire.name} server needs an IP address`);
    this.server = options.server;
    this.source = options.source;
    this.#pvd = options.pvd;
    this.#guard = options.guard;
    this.#pool = new StreamPool({
      ...options,
      describe: wire.describe(hostPort(address, port)),
      open: () => {
        this.#guard.check(this.#pvd, address, port, this.source); // every connect
        return wire.connect(address, port);
      },
    });
  }

  /** Connections open now. */
  get connections(): number {
    return this.#pool.size;
  }

  /** Sends `query` on a reused or new connection and waits for its answer. */
  exchange(query: Uint8Array, { signal }: ExchangeOptions): Promise<Uint8Array> {
    try {
      this.#guard.check(this.#pvd, this.server.address!, this.server.port, this.source); // every send
    } catch (e) {
      return Promise.reject(e);
    }
    if (signal.aborted) return Promise.reject(abortError(signal));
    return this.#pool.exchange(query, signal);
  }

  /** Closes every connection. */
  close(): Promise<void> {
    this.#pool.close();
    return Promise.resolve();
  }
}

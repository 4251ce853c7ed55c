/**
 * Do53 over UDP (RFC 1035): every query goes out from a socket of its own, on a fresh random
 * port bound to the PvD's source address, and that socket is closed once the query is answered
 * or given up (RFC 5452 §9.2: an off-path attacker must guess the port as well as the ID, and a
 * port he learned is of no use for the next query).
 *
 * Why no longer one port for many queries (a port used to carry up to 64 queries over 2 s): at
 * 1,000 queries/s that was 32 distinct ports per 2,000 queries, and in a namespace an attacker
 * who learned a port once had 4 of 5 forged answers taken during its life (bench/README.md,
 * `bench/upstream_ports.ts`).
 *
 * Why socket setup is still not on the answer's path (binding and closing were ~20 µs of each
 * miss when pvdns 0.1 did them per query): sockets are bound ahead of need, a few spares per
 * transport, and a query takes one. Used sockets are closed and spares bound again in a later
 * task of the event loop (`setImmediate`) after an answer has been handed on, so after the reply
 * to the client has gone. The spares follow the most queries taken between two refills
 * ({@linkcode MIN_SPARE_SOCKETS} to {@linkcode MAX_SPARE_SOCKETS}), back to the fewest after 10 s
 * without a query. A query that finds no spare (the first, a burst beyond the spares) binds for
 * itself; {@linkcode UdpTransport.bindsOnPath} counts those. The binding still costs CPU, only
 * not while a client waits for this answer.
 *
 * Ports are the kernel's random draws from its ephemeral range; a port among the transport's
 * last 2,048 is drawn again (`_udp_sockets.ts`).
 *
 * Which datagram is the answer. With FFI (`--allow-ffi`, Linux), each socket is `connect(2)`ed
 * to the server when bound (`sys/socket_fd.ts`): the kernel drops datagrams from other addresses
 * and
 * ports, a spare is emptied just before its query goes out, and an ICMP port unreachable fails
 * the query with reason `refused` within 20 ms (Deno's receive does not wake on a socket error,
 * so sockets waiting for an answer are asked for one). Without FFI (the daemon's start task) the
 * sender's address and port are checked here, and a spare reads and drops what reaches it before
 * its query (only a datagram read in the same turn of the event loop as the query is sent could
 * still be compared with it). Either way only a datagram with the query's ID and question
 * (letter for letter with 0x20, {@linkcode ExchangeOptions.exactCase}) is the answer; anything
 * else is told to {@linkcode TransportOptions.onUnexpectedAnswer} and the wait goes on.
 *
 * @module
 */

import { setImmediate } from "node:timers";
import type { ServerConfig } from "../config/types.ts";
import { answersQuery } from "../dns/query.ts";
import { MAX_ANSWER, type QuerySocket, QuerySockets } from "./_udp_sockets.ts";
import {
  abortError,
  CaseMismatchError,
  type ExchangeOptions,
  type SendGuard,
  SPOOF_BURST,
  type Transport,
  TransportError,
  type TransportOptions,
} from "./transport.ts";

/** Fewest sockets kept bound ahead of need, once the transport has been used. */
export const MIN_SPARE_SOCKETS = 2;
/** Most sockets kept bound ahead of need, by default. */
export const MAX_SPARE_SOCKETS = 16;
/** Spares beyond the fewest are closed after this long without a query, ms. */
const SPARE_IDLE_MS = 10_000;
/** Spoofing warnings of one transport are at least this far apart, ms. */
const WARN_EVERY_MS = 10_000;
/** How often connected sockets waiting for an answer are asked for an ICMP error, ms. */
const REFUSAL_CHECK_MS = 20;

/** Options of {@linkcode UdpTransport}. */
export interface UdpTransportOptions extends TransportOptions {
  /**
   * `connect(2)` each socket to the server through FFI. Default: when the ffi permission is
   * granted on Linux (and the addresses have no zone). Without it the sender is checked here.
   */
  readonly connect?: boolean;
  /** Most sockets kept bound ahead of need. @default {MAX_SPARE_SOCKETS} */
  readonly maxSpareSockets?: number;
  /** Spares beyond the fewest are closed after this long without a query, ms. @default 10000 */
  readonly spareIdleMs?: number;
}

/** Do53 over UDP to one server of one PvD: one fresh socket per query. */
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
  #onUnexpected: ((burstPorts: number) => void) | undefined;
  #sockets: QuerySockets;
  #maxSpares: number;
  #spareIdleMs: number;
  /** Bound (connected where possible), never used. */
  #spares: QuerySocket[] = [];
  #wantSpares = MIN_SPARE_SOCKETS;
  #takenSinceRefill = 0;
  #takenSinceTrim = 0;
  /** Sockets whose query is over, closed by the next refill. */
  #used: QuerySocket[] = [];
  #inFlight = new Set<QuerySocket>();
  /** Receive buffers of sockets no longer reading, for the next ones. */
  #buffers: Uint8Array[] = [];
  #refillDue = false;
  #trimTimer: ReturnType<typeof setTimeout> | undefined;
  #refusalTimer: ReturnType<typeof setTimeout> | undefined;
  #burstPorts = 0;
  #warnedAt = -Infinity;
  #bindsOnPath = 0;
  #closed = false;

  /** Creates the transport; no socket is opened until an exchange passes the leak guard. */
  constructor(options: UdpTransportOptions) {
    if (!options.server.address) throw new TypeError("A UDP server needs an IP address");
    this.server = options.server;
    this.source = options.source;
    this.#pvd = options.pvd;
    this.#guard = options.guard;
    this.#to = { transport: "udp", hostname: options.server.address, port: options.server.port };
    this.#onUnexpected = options.onUnexpectedAnswer;
    this.#maxSpares = Math.max(MIN_SPARE_SOCKETS, options.maxSpareSockets ?? MAX_SPARE_SOCKETS);
    this.#spareIdleMs = options.spareIdleMs ?? SPARE_IDLE_MS;
    this.#sockets = new QuerySockets({
      source: options.source,
      server: { ...options.server, address: options.server.address },
      connect: options.connect,
    });
  }

  /** True when its sockets are connected to the server (FFI). */
  get connected(): boolean {
    return this.#sockets.connected;
  }

  /**
   * Sockets bound inside an exchange because no spare was ready (the first query, a burst
   * beyond the spares): the only binds on a query's path.
   */
  get bindsOnPath(): number {
    return this.#bindsOnPath;
  }

  /** Sends `query` from a socket of its own and waits for its answer. */
  exchange(query: Uint8Array, { signal, exactCase = false }: ExchangeOptions): Promise<Uint8Array> {
    if (this.#closed) {
      return Promise.reject(new TransportError("closed", `${this.server.text}: transport closed`));
    }
    try {
      this.#guard.check(this.#pvd, this.#to.hostname, this.#to.port, this.source); // every send
    } catch (e) {
      return Promise.reject(e);
    }
    if (signal.aborted) return Promise.reject(abortError(signal));
    let socket = this.#spares.pop();
    if (socket) {
      // What reached a connected spare before its query existed answers nothing.
      for (let n = this.#sockets.drain(socket); n > 0; n--) this.#unexpected(socket);
    } else {
      try {
        socket = this.#sockets.bind();
      } catch (e) {
        const message = `cannot bind ${this.source}: ${(e as Error).message}`;
        return Promise.reject(new TransportError("closed", message));
      }
      this.#bindsOnPath++;
    }
    this.#takenSinceRefill++;
    this.#takenSinceTrim++;
    return this.#ask(socket, query, signal, exactCase);
  }

  /** Closes every socket; queries in flight fail with reason `closed`. */
  close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#trimTimer);
    clearTimeout(this.#refusalTimer);
    this.#trimTimer = this.#refusalTimer = undefined;
    for (const s of [...this.#inFlight]) s.end?.(new TransportError("closed", "transport closed"));
    this.#sockets.close(this.#spares);
    this.#sockets.close(this.#used);
    this.#spares.length = 0;
    this.#used.length = 0;
    return Promise.resolve();
  }

  #ask(
    socket: QuerySocket,
    query: Uint8Array,
    signal: AbortSignal,
    exactCase: boolean,
  ): Promise<Uint8Array> {
    return new Promise<Uint8Array>((resolve, reject) => {
      const end = (error: unknown, answer?: Uint8Array) => {
        if (socket.over) return;
        socket.over = true;
        socket.end = undefined;
        signal.removeEventListener("abort", onAbort);
        this.#inFlight.delete(socket);
        if (answer) resolve(answer);
        else reject(error);
        this.#done(socket);
      };
      const onAbort = () => end(abortError(signal));
      socket.query = query;
      socket.exactCase = exactCase;
      socket.end = end;
      this.#inFlight.add(socket);
      signal.addEventListener("abort", onAbort, { once: true });
      socket.conn.send(query, this.#to).catch((e) => end(socketError(e, signal)));
      if (!socket.reading) this.#read(socket);
      if (socket.fd >= 0 && this.#refusalTimer === undefined) this.#armRefusalCheck();
    });
  }

  /**
   * Reads `socket` until its query is over. Before it has a query (a spare), whatever it reads is
   * unexpected: nothing sent to it early waits to be taken for the answer.
   */
  async #read(socket: QuerySocket): Promise<void> {
    socket.reading = true;
    const buffer = this.#buffers.pop() ?? new Uint8Array(MAX_ANSWER);
    const { hostname, port } = this.#to;
    try {
      while (!socket.over) {
        const [data, from] = await socket.conn.receive(buffer);
        if (socket.over) break; // given up meanwhile: a late answer is not an unexpected one
        const f = from as Deno.NetAddr;
        const { end, query, exactCase } = socket;
        if (end && query && f.port === port && sameAddress(f.hostname, hostname)) {
          if (answersQuery(query, data, exactCase)) return end(undefined, data.slice());
          if (exactCase && answersQuery(query, data)) {
            return end(new CaseMismatchError(`${this.server.text} did not keep the name's case`));
          }
        }
        this.#unexpected(socket);
      }
    } catch (e) {
      socket.end?.(socketError(e, undefined));
    } finally {
      socket.reading = false;
      // Only now that no receive is pending into it (the runtime writes into it until then).
      if (this.#buffers.length < this.#maxSpares) this.#buffers.push(buffer);
    }
  }

  #armRefusalCheck(): void {
    this.#refusalTimer = setTimeout(this.#checkRefusals, REFUSAL_CHECK_MS);
    Deno.unrefTimer(this.#refusalTimer);
  }

  /** Fails the queries whose server answered with an ICMP error (connected sockets only). */
  #checkRefusals = (): void => {
    this.#refusalTimer = undefined;
    let waiting = false;
    for (const s of this.#inFlight) {
      if (s.fd < 0) continue;
      const reason = this.#sockets.icmpError(s);
      if (!reason) waiting = true;
      else s.end?.(new TransportError(reason, `${this.server.text}: ICMP error (${reason})`));
    }
    if (waiting && !this.#closed) this.#armRefusalCheck();
  };

  #unexpected(socket: QuerySocket): void {
    let burstPorts = 0;
    if (++socket.unexpected === SPOOF_BURST) {
      this.#burstPorts++;
      const now = performance.now();
      if (now - this.#warnedAt >= WARN_EVERY_MS) {
        burstPorts = this.#burstPorts;
        this.#burstPorts = 0;
        this.#warnedAt = now;
      }
    }
    this.#onUnexpected?.(burstPorts);
  }

  /** `socket`'s query is over: it is closed, and spares bound, in a later task. */
  #done(socket: QuerySocket): void {
    if (this.#closed) return this.#sockets.close([socket]);
    this.#used.push(socket);
    if (this.#refillDue) return;
    this.#refillDue = true;
    setImmediate(this.#refill);
  }

  #refill = (): void => {
    this.#refillDue = false;
    if (this.#closed) return;
    this.#sockets.close(this.#used);
    this.#used.length = 0;
    this.#wantSpares = Math.min(
      this.#maxSpares,
      Math.max(MIN_SPARE_SOCKETS, this.#takenSinceRefill, this.#wantSpares - 1),
    );
    this.#takenSinceRefill = 0;
    try {
      while (this.#spares.length < this.#wantSpares) {
        const spare = this.#sockets.bind();
        this.#spares.push(spare);
        // Unconnected, a receive pending ahead of the query reads and drops what reaches the
        // spare early. A connected spare is emptied just before its query instead: a pending
        // receive could have read a datagram just before the query and hand it over just after.
        if (spare.fd < 0) this.#read(spare);
      }
    } catch { /* out of ports or descriptors: the next query binds for itself and says so */ }
    if (this.#spares.length > MIN_SPARE_SOCKETS && this.#trimTimer === undefined) {
      this.#takenSinceTrim = 0;
      this.#trimTimer = setTimeout(this.#trim, this.#spareIdleMs);
      Deno.unrefTimer(this.#trimTimer);
    }
  };

  /** Spares beyond the fewest are closed once no query took one for a while. */
  #trim = (): void => {
    this.#trimTimer = undefined;
    if (this.#takenSinceTrim > 0) {
      this.#takenSinceTrim = 0;
      this.#trimTimer = setTimeout(this.#trim, this.#spareIdleMs);
      Deno.unrefTimer(this.#trimTimer);
      return;
    }
    this.#wantSpares = MIN_SPARE_SOCKETS;
    this.#sockets.close(this.#spares.splice(0, this.#spares.length - MIN_SPARE_SOCKETS));
  };
}

/** A failed send or receive: `refused` for an ICMP port unreachable, else `closed`. */
function socketError(e: unknown, signal: AbortSignal | undefined): TransportError {
  if (signal?.aborted) return abortError(signal);
  const refused = e instanceof Deno.errors.ConnectionRefused;
  return new TransportError(refused ? "refused" : "closed", (e as Error).message, { cause: e });
}

function sameAddress(a: string, b: string): boolean {
  return a === b || a.toLowerCase() === b.toLowerCase() ||
    (a.startsWith("::ffff:") && a.slice(7) === b);
}

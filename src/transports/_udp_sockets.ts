/**
 * The sockets of the UDP transport (`udp.ts`): each bound on a random port that the transport
 * has not used lately, and with FFI `connect(2)`ed to the server (`sys/socket_fd.ts`).
 *
 * Ports are the kernel's random draws from its ephemeral range. Random draws repeat (2,000
 * draws from 28,232 ports repeat about 70 times), so a port among the last
 * {@linkcode RECENT_PORTS} is drawn again, at most 3 more times.
 *
 * @module
 */

import {
  connectDatagram,
  drainDatagrams,
  ECONNREFUSED,
  loadSocketLibc,
  pendingSocketError,
  setSockaddrPort,
  sockaddr,
  type SocketLibc,
} from "../sys/socket_fd.ts";

/** A port is not taken again before this many others were (redrawn at most 3 times). */
export const RECENT_PORTS = 2048;
/** Draws of the kernel for one socket before a recently used port is taken anyway. */
const PORT_DRAWS = 4;
/** Largest datagram read (see udp.ts). */
export const MAX_ANSWER = 4096;
/** Where what waits on a connected spare is read and dropped. */
const DRAIN_BUFFER = new Uint8Array(MAX_ANSWER);

/** A bound socket waiting for, or carrying, its one query. */
export interface QuerySocket {
  /** Deno's socket. */
  readonly conn: Deno.DatagramConn;
  /** Its descriptor when connected through FFI, else -1. */
  readonly fd: number;
  /** Datagrams it took that answered nothing. */
  unexpected: number;
  /** A receive is pending (an unconnected spare reads before its query too). */
  reading: boolean;
  /** Its query, once taken. */
  query: Uint8Array | undefined;
  /** The answer must repeat the query's letter case (0x20). */
  exactCase: boolean;
  /** Ends its query (with an answer or an error) while the query waits. */
  end: ((error: unknown, answer?: Uint8Array) => void) | undefined;
  /** Its query is over: nothing it receives counts any more. */
  over: boolean;
}

/** Where the sockets of one transport are bound and what they are connected to. */
export interface QuerySocketsOptions {
  /** The local address every socket binds to. */
  readonly source: string;
  /** The server (a zoned one is never connected: its sockaddr would need the scope id). */
  readonly server: { readonly address: string; readonly port: number; readonly zone?: string };
  /** Connect through FFI: true, false, or undefined for "when the ffi permission is granted". */
  readonly connect?: boolean | undefined;
}

/** Binds the sockets of one transport. */
export class QuerySockets {
  readonly #source: string;
  readonly #libc: SocketLibc | null;
  /** With FFI: the bound address (its port written per socket) and the server's. */
  readonly #bound: Uint8Array | undefined;
  readonly #peer: Uint8Array | undefined;
  readonly #recent = new RecentPorts(RECENT_PORTS);
  /** The lowest descriptor closed last: where the next socket most likely lands. */
  #freedFd = -1;

  /** Nothing is bound yet. */
  constructor(options: QuerySocketsOptions) {
    this.#source = options.source;
    // A link-local address would need its scope id in the sockaddr: left unconnected.
    const zoned = options.server.zone !== undefined || options.source.includes("%");
    this.#libc = options.connect === false || zoned ? null : loadSocketLibc();
    if (options.connect === true && !this.#libc) {
      throw new TypeError("connected UDP sockets need Linux, --allow-ffi and no zone");
    }
    if (this.#libc) {
      this.#bound = sockaddr(options.source, 0);
      this.#peer = sockaddr(options.server.address, options.server.port);
    }
  }

  /** True when sockets are connected to the server. */
  get connected(): boolean {
    return this.#libc !== null;
  }

  /** Binds a socket on a port not used lately, connected where FFI allows. */
  bind(): QuerySocket {
    for (let draw = 1;; draw++) {
      const conn = Deno.listenDatagram({ hostname: this.#source, port: 0, transport: "udp" });
      const port = (conn.addr as Deno.NetAddr).port;
      if (draw < PORT_DRAWS && this.#recent.has(port)) {
        conn.close();
        continue;
      }
      this.#recent.add(port);
      let fd = -1;
      if (this.#libc) {
        setSockaddrPort(this.#bound!, port);
        fd = connectDatagram(this.#libc, this.#bound!, this.#peer!, this.#freedFd);
        if (fd >= 0 && fd === this.#freedFd) this.#freedFd = -1;
      }
      return {
        conn,
        fd,
        unexpected: 0,
        reading: false,
        query: undefined,
        exactCase: false,
        end: undefined,
        over: false,
      };
    }
  }

  /** Closes `sockets`, remembering the lowest descriptor freed for the next bind. */
  close(sockets: readonly QuerySocket[]): void {
    let freed = -1;
    for (const s of sockets) {
      if (s.fd >= 0 && (freed < 0 || s.fd < freed)) freed = s.fd;
      try {
        s.conn.close();
      } catch { /* already closed */ }
    }
    if (freed >= 0) this.#freedFd = freed;
  }

  /** Empties a connected socket: how many datagrams were waiting (none when unconnected). */
  drain(socket: QuerySocket): number {
    return socket.fd >= 0 ? drainDatagrams(this.#libc!, socket.fd, DRAIN_BUFFER) : 0;
  }

  /**
   * The ICMP error a connected socket got instead of an answer: `refused` (port unreachable),
   * `closed` (another), or undefined (none, or unconnected).
   */
  icmpError(socket: QuerySocket): "refused" | "closed" | undefined {
    if (socket.fd < 0) return undefined;
    const errno = pendingSocketError(this.#libc!, socket.fd);
    return errno === 0 ? undefined : errno === ECONNREFUSED ? "refused" : "closed";
  }
}

/** The last `size` ports taken, oldest first out: a ring and one bit per port (12 KiB). */
class RecentPorts {
  #ring: Uint16Array;
  #next = 0;
  #filled = false;
  #bits = new Uint8Array(65536 / 8);

  constructor(size: number) {
    this.#ring = new Uint16Array(size);
  }

  has(port: number): boolean {
    return (this.#bits[port >> 3]! & (1 << (port & 7))) !== 0;
  }

  /** `port` was taken. One already in the set keeps its older place. */
  add(port: number): void {
    if (this.has(port)) return;
    if (this.#filled) {
      const old = this.#ring[this.#next]!;
      this.#bits[old >> 3]! &= ~(1 << (old & 7));
    }
    this.#ring[this.#next] = port;
    this.#bits[port >> 3]! |= 1 << (port & 7);
    if (++this.#next === this.#ring.length) {
      this.#next = 0;
      this.#filled = true;
    }
  }
}

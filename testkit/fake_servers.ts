/**
 * In-process fake upstreams for what real servers will not do on demand: black holes (a socket
 * that reads and never answers) and a programmable DNS-over-TCP/TLS server that can hold
 * queries and answer them in another order, close a connection after N answers, and report
 * every connection it accepted and from which address.
 *
 * All of them run on loopback addresses the test got from `loopbackAddress()`; `close()` ends
 * every socket they hold.
 *
 * @module
 */

import * as packet from "dns-packet";
import { Buffer } from "node:buffer";
import { readTcpFrames, tcpFrame, writeAll } from "./tcp_frames.ts";

/** A UDP socket that reads datagrams and never answers. */
export interface UdpBlackHole {
  readonly address: string;
  readonly port: number;
  /** Datagrams received. */
  readonly seen: number;
  /** Resolves once `count` datagrams have been received (at once when they have). */
  received(count: number): Promise<void>;
  close(): Promise<void>;
}

/** Starts a UDP black hole on `address:port`. */
export function udpBlackHole(address: string, port = 53): UdpBlackHole {
  const sock = Deno.listenDatagram({ hostname: address, port, transport: "udp" });
  let seen = 0;
  const waiting: { count: number; resolve: () => void }[] = [];
  const loop = (async () => {
    try {
      for (;;) {
        await sock.receive();
        seen++;
        for (const w of waiting.filter((w) => w.count <= seen)) {
          waiting.splice(waiting.indexOf(w), 1);
          w.resolve();
        }
      }
    } catch { /* closed */ }
  })();
  return {
    address,
    port,
    get seen() {
      return seen;
    },
    received(count) {
      if (seen >= count) return Promise.resolve();
      return new Promise((resolve) => waiting.push({ count, resolve }));
    },
    async close() {
      try {
        sock.close();
      } catch { /* closed */ }
      await loop;
    },
  };
}

/** A TCP listener that accepts connections, reads whatever comes, and never writes. */
export interface TcpBlackHole {
  readonly address: string;
  readonly port: number;
  /** Connections accepted. */
  readonly connections: number;
  /** Remote addresses of the accepted connections. */
  readonly peers: readonly string[];
  /** Bytes read, over all connections. */
  readonly bytes: number;
  close(): Promise<void>;
}

/** Starts a TCP black hole on `address:port` (for DoT and DoH it never even completes TLS). */
export function tcpBlackHole(address: string, port: number): TcpBlackHole {
  const listener = Deno.listen({ hostname: address, port, transport: "tcp" });
  const conns = new Set<Deno.Conn>();
  const peers: string[] = [];
  let bytes = 0;
  const readers: Promise<void>[] = [];
  const loop = (async () => {
    try {
      for await (const conn of listener) {
        conns.add(conn);
        peers.push((conn.remoteAddr as Deno.NetAddr).hostname);
        readers.push((async () => {
          const buf = new Uint8Array(4096);
          try {
            for (;;) {
              const n = await conn.read(buf);
              if (n === null) break;
              bytes += n;
            }
          } catch { /* closed */ }
          conns.delete(conn);
          try {
            conn.close();
          } catch { /* closed */ }
        })());
      }
    } catch { /* closed */ }
  })();
  return {
    address,
    port,
    get connections() {
      return peers.length;
    },
    peers,
    get bytes() {
      return bytes;
    },
    async close() {
      closeAll(listener, conns);
      await loop;
      await Promise.all(readers);
    },
  };
}

/** A UDP upstream that answers every query after a delay of its choosing. */
export interface DelayedUdpUpstream {
  /** Question names asked, in order (as dns-packet writes them: no trailing dot). */
  readonly names: readonly string[];
  /** The source port of each query, in order. */
  readonly ports: readonly number[];
  close(): Promise<void>;
}

/**
 * Starts a UDP upstream on `address:53` that answers A `answer` to each query after
 * `delayMs(name)` ms (0: at once), and records every name asked and the port it came from.
 */
export function delayedUdpUpstream(
  address: string,
  delayMs: (name: string) => number,
  answer = "192.0.2.1",
): DelayedUdpUpstream {
  const sock = Deno.listenDatagram({ hostname: address, port: 53, transport: "udp" });
  const names: string[] = [];
  const ports: number[] = [];
  const timers = new Set<ReturnType<typeof setTimeout>>();
  const loop = (async () => {
    try {
      for (;;) {
        const [data, from] = await sock.receive();
        const name = packet.decode(Buffer.from(data)).questions?.[0]?.name ?? "";
        names.push(name);
        ports.push((from as Deno.NetAddr).port);
        const send = () => sock.send(answerA(data, answer), from).catch(() => {});
        const delay = delayMs(name);
        if (delay <= 0) {
          send();
          continue;
        }
        const timer = setTimeout(() => {
          timers.delete(timer);
          send();
        }, delay);
        timers.add(timer);
      }
    } catch { /* closed */ }
  })();
  return {
    names,
    ports,
    async close() {
      for (const t of timers) clearTimeout(t);
      sock.close();
      await loop;
    },
  };
}

/** A DNS answer for `query`: one A record per question, `192.0.2.N` with N from the name. */
export function answerA(query: Uint8Array, address = "192.0.2.1"): Uint8Array {
  const q = packet.decode(Buffer.from(query));
  const question = q.questions![0]!;
  return new Uint8Array(packet.encode({
    type: "response",
    id: q.id,
    flags: packet.RECURSION_DESIRED | packet.RECURSION_AVAILABLE,
    questions: [question],
    answers: question.type === "A"
      ? [{ type: "A", name: question.name, ttl: 60, data: address }]
      : [],
  }));
}

/** Options of {@linkcode startStreamServer}. */
export interface StreamServerOptions {
  readonly address: string;
  readonly port: number;
  /** Serve DoT with this certificate and key (PEM texts); plain TCP without. */
  readonly tls?: { readonly cert: string; readonly key: string };
  /** Hold queries until this many arrived on one connection, then answer them in reverse. */
  readonly holdFor?: number;
  /** Close a connection after answering this many queries on it. */
  readonly closeAfter?: number;
  /** The answer to a query. @default answerA */
  readonly answer?: (query: Uint8Array) => Uint8Array;
}

/** A running fake DNS-over-stream server. */
export interface StreamServer {
  /** Connections accepted so far. */
  readonly accepted: number;
  /** Connections open now. */
  readonly open: number;
  /** Remote addresses of accepted connections. */
  readonly peers: readonly string[];
  /** Queries received, with the connection number (0-based) each came on and its wire ID. */
  readonly queries: readonly { readonly conn: number; readonly id: number }[];
  /** Resolves when the connection with this number has been closed by the client or server. */
  closed(conn: number): Promise<void>;
  close(): Promise<void>;
}

/** Starts a fake Do53-over-TCP (or DoT) server. */
export function startStreamServer(options: StreamServerOptions): StreamServer {
  const listener: Deno.Listener = options.tls
    ? Deno.listenTls({
      hostname: options.address,
      port: options.port,
      cert: options.tls.cert,
      key: options.tls.key,
    })
    : Deno.listen({ hostname: options.address, port: options.port });
  const answer = options.answer ?? ((q: Uint8Array) => answerA(q));
  const conns = new Set<Deno.Conn>();
  const peers: string[] = [];
  const queries: { conn: number; id: number }[] = [];
  const closedAt = new Map<number, { promise: Promise<void>; resolve: () => void }>();
  const closedOf = (n: number) => {
    let c = closedAt.get(n);
    if (!c) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => resolve = r);
      c = { promise, resolve };
      closedAt.set(n, c);
    }
    return c;
  };
  const handlers: Promise<void>[] = [];
  const serve = async (conn: Deno.Conn, n: number) => {
    const held: Uint8Array[] = [];
    let answered = 0;
    const send = async (msg: Uint8Array) => {
      await writeAll(conn, tcpFrame(msg));
      answered++;
    };
    try {
      for await (const frame of readTcpFrames(conn)) {
        const q = frame.slice();
        queries.push({ conn: n, id: (q[0]! << 8) | q[1]! });
        if (options.holdFor) {
          held.push(q);
          if (held.length < options.holdFor) continue;
          for (const h of held.splice(0).reverse()) await send(answer(h));
        } else {
          await send(answer(q));
        }
        if (options.closeAfter !== undefined && answered >= options.closeAfter) break;
      }
    } catch { /* reset or closed */ }
    conns.delete(conn);
    try {
      conn.close();
    } catch { /* closed */ }
    closedOf(n).resolve();
  };
  const loop = (async () => {
    try {
      for await (const conn of listener) {
        const n = peers.length;
        peers.push((conn.remoteAddr as Deno.NetAddr).hostname);
        conns.add(conn);
        handlers.push(serve(conn, n));
      }
    } catch { /* closed */ }
  })();
  return {
    get accepted() {
      return peers.length;
    },
    get open() {
      return conns.size;
    },
    peers,
    queries,
    closed: (n) => closedOf(n).promise,
    async close() {
      closeAll(listener, conns);
      await loop;
      await Promise.all(handlers);
    },
  };
}

/** Closes a listener and its connections; any of them may be closed already. */
function closeAll(listener: Deno.Listener, conns: Iterable<Deno.Conn>): void {
  for (const c of [listener, ...conns]) {
    try {
      c.close();
    } catch { /* closed */ }
  }
}

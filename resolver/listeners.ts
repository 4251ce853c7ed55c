/**
 * DNS listeners: UDP (`Deno.listenDatagram`, which answered about twice the queries per CPU
 * second of `node:dgram` under Deno, see issue 7) and TCP per RFC 7766 (length-prefixed
 * messages, several queries per connection answered as they complete, an idle timeout, a bound
 * number of connections).
 *
 * @module
 */

import type { LimitsConfig, ListenerConfig } from "./config_types.ts";
import type { ClientInfo } from "./pipeline.ts";
import type { HandleOptions } from "./stub.ts";

/** Answers one raw query, at once when it can; null = send nothing. */
export type QueryHandler = (
  raw: Uint8Array,
  client: ClientInfo,
  options?: HandleOptions,
) => Uint8Array | null | Promise<Uint8Array | null>;

/** A bound listener. */
export interface DnsListener {
  /** `ADDR:PORT` with the port actually bound. */
  readonly text: string;
  readonly port: number;
  /** Stops accepting and closes open connections. */
  close(): Promise<void>;
}

/** The client went away, or we are closing: nothing to do. */
function ignore(): void {}

function hostPort(address: string, port: number): string {
  return address.includes(":") ? `[${address}]:${port}` : `${address}:${port}`;
}

/** Binds a UDP listener and serves queries until closed. */
export function startUdpListener(
  listener: ListenerConfig,
  handle: QueryHandler,
  log: (line: string) => void,
  options: { listener: ListenerConfig } = { listener },
): DnsListener {
  const conn = Deno.listenDatagram({
    hostname: listener.address,
    port: listener.port,
    transport: "udp",
  });
  const port = (conn.addr as Deno.NetAddr).port;
  let closed = false;
  const loop = (async () => {
    while (!closed) {
      let data: Uint8Array, addr: Deno.Addr;
      try {
        [data, addr] = await conn.receive();
      } catch (e) {
        if (closed) return;
        log(
          `pvdns: udp ${hostPort(listener.address, port)} receive failed: ${(e as Error).message}`,
        );
        continue;
      }
      const from = addr as Deno.NetAddr;
      const reply = handle(
        data,
        { address: from.hostname, port: from.port, transport: "udp" },
        options,
      );
      if (reply instanceof Promise) {
        reply.then((r) => {
          if (r && !closed) conn.send(r, addr).catch(ignore);
        }, ignore);
      } else if (reply) {
        conn.send(reply, addr).catch(ignore); // a cache hit goes out without waiting for anything
      }
    }
  })();
  return {
    text: hostPort(listener.address, port),
    port,
    async close() {
      closed = true;
      conn.close();
      await loop;
    },
  };
}

/** Binds a TCP listener and serves RFC 7766 connections until closed. */
export function startTcpListener(
  listener: ListenerConfig,
  handle: QueryHandler,
  limits: LimitsConfig,
  log: (line: string) => void,
  options: { listener: ListenerConfig } = { listener },
): DnsListener {
  const server = Deno.listen({ hostname: listener.address, port: listener.port });
  const port = (server.addr as Deno.NetAddr).port;
  const open = new Set<Deno.TcpConn>();
  const running = new Set<Promise<void>>();
  let closed = false;
  const loop = (async () => {
    while (!closed) {
      let conn: Deno.TcpConn;
      try {
        conn = await server.accept();
      } catch (e) {
        if (closed) return;
        log(
          `pvdns: tcp ${hostPort(listener.address, port)} accept failed: ${(e as Error).message}`,
        );
        continue;
      }
      if (open.size >= limits.tcpConnections) {
        conn.close(); // bounded: refuse rather than queue
        continue;
      }
      open.add(conn);
      const p = serveConnection(conn, options, handle, limits.tcpIdleMs).finally(() => {
        open.delete(conn);
        running.delete(p);
      });
      running.add(p);
    }
  })();
  return {
    text: hostPort(listener.address, port),
    port,
    async close() {
      closed = true;
      server.close();
      await loop;
      for (const c of open) {
        try {
          c.close();
        } catch { /* already closed */ }
      }
      await Promise.allSettled([...running]);
    },
  };
}

async function serveConnection(
  conn: Deno.TcpConn,
  options: { listener: ListenerConfig },
  handle: QueryHandler,
  idleMs: number,
): Promise<void> {
  const remote = conn.remoteAddr as Deno.NetAddr;
  const client: ClientInfo = { address: remote.hostname, port: remote.port, transport: "tcp" };
  let pending = 0;
  let closed = false;
  let writing: Promise<unknown> = Promise.resolve();
  let idle: ReturnType<typeof setTimeout> | undefined;
  const close = () => {
    if (closed) return;
    closed = true;
    clearTimeout(idle);
    try {
      conn.close();
    } catch { /* already closed */ }
  };
  const arm = () => {
    clearTimeout(idle);
    idle = setTimeout(() => pending === 0 ? close() : arm(), idleMs);
  };
  arm();
  const write = (msg: Uint8Array) => {
    const frame = new Uint8Array(2 + msg.length);
    frame[0] = msg.length >> 8;
    frame[1] = msg.length & 0xff;
    frame.set(msg, 2);
    // Replies go out whole and one at a time, in the order their answers complete.
    writing = writing.then(async () => {
      let off = 0;
      while (off < frame.length && !closed) off += await conn.write(frame.subarray(off));
    }).catch(close);
  };
  let buf = new Uint8Array(0);
  const chunk = new Uint8Array(65537);
  try {
    while (!closed) {
      const n = await conn.read(chunk);
      if (n === null) break;
      arm();
      const next = new Uint8Array(buf.length + n);
      next.set(buf);
      next.set(chunk.subarray(0, n), buf.length);
      buf = next;
      while (buf.length >= 2) {
        const len = (buf[0]! << 8) | buf[1]!;
        if (buf.length < 2 + len) break;
        const msg = buf.slice(2, 2 + len);
        buf = buf.subarray(2 + len);
        pending++;
        Promise.resolve(handle(msg, client, options))
          .then((reply) => {
            if (reply && !closed) write(reply);
            else if (!reply) close(); // unreadable query: RFC 7766 §8 lets us close
          })
          .catch(close)
          .finally(() => pending--);
      }
    }
  } catch {
    // reset by peer, or closed by us
  }
  // The client half-closed: let pending answers go out, then close.
  while (pending > 0 && !closed) await new Promise((r) => setTimeout(r, 5));
  await writing;
  close();
}

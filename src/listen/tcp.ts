/**
 * The TCP listener per RFC 7766: length-prefixed messages, several queries per connection
 * answered as they complete, an idle timeout, a bound number of connections. A failed accept
 * (EMFILE when descriptors run out) is counted as `fds` and retried after a short wait that
 * doubles (`src/sys/fd_limit.ts`): it never stops the listener.
 *
 * @module
 */

import { tcpFrame } from "../dns/wire.ts";
import { AcceptRetry } from "../sys/fd_limit.ts";
import {
  type ClientInfo,
  type DnsListener,
  hostPort,
  ignore,
  type LimitCounter,
  type ListenerSlot,
  type QueryHandler,
  type TcpLimits,
} from "./listener.ts";

/** Binds a TCP listener and serves RFC 7766 connections until closed. */
export function startTcpListener(
  slot: ListenerSlot,
  handle: QueryHandler,
  limits: TcpLimits,
  log: (line: string) => void,
  onLimit: LimitCounter = ignore,
  bindPort: number = slot.listener.port,
): DnsListener {
  const listener = { ...slot.listener, port: bindPort };
  const server = Deno.listen({ hostname: listener.address, port: listener.port });
  const port = (server.addr as Deno.NetAddr).port;
  const open = new Map<Deno.TcpConn, ClientConnection>();
  const running = new Set<Promise<void>>();
  let closed = false;
  let stopped = false;
  const retry = new AcceptRetry({ name: `tcp ${hostPort(listener.address, port)}`, log, onLimit });
  const loop = (async () => {
    while (!closed && !stopped) {
      let conn: Deno.TcpConn;
      try {
        conn = await server.accept();
      } catch (e) {
        if (closed || stopped) return;
        await retry.failed(e); // EMFILE: wait a little, as a busy loop of failures would spin
        continue;
      }
      retry.succeeded();
      if (closed || stopped) {
        conn.close();
        return;
      }
      if (open.size >= limits.tcpConnections) {
        onLimit("tcp_connections");
        conn.close(); // bounded: refuse rather than queue
        continue;
      }
      const c = new ClientConnection(conn, slot, handle, limits, onLimit);
      open.set(conn, c);
      const p = c.serve().finally(() => {
        open.delete(conn);
        running.delete(p);
      });
      running.add(p);
    }
  })();
  return {
    text: hostPort(listener.address, port),
    port,
    async stop() {
      if (!stopped) {
        stopped = true;
        retry.wake();
        server.close();
        for (const c of open.values()) c.drain();
      }
      await Promise.allSettled([...running]);
    },
    async close() {
      closed = true;
      retry.wake();
      if (!stopped) server.close();
      await loop;
      for (const c of open.values()) c.close();
      await Promise.allSettled([...running]);
    },
  };
}

/**
 * One client TCP connection (RFC 7766): length-prefixed queries, answered in the order they
 * complete. Bounded: at most `tcpPipeline` queries unanswered (then it is not read until one is
 * written), a started message must arrive whole within `tcpReadMs` (slow-loris), and a
 * connection with nothing to do closes after `tcpIdleMs`.
 */
class ClientConnection {
  #conn: Deno.TcpConn;
  #slot: ListenerSlot;
  #handle: QueryHandler;
  #limits: TcpLimits;
  #onLimit: LimitCounter;
  #client: ClientInfo;
  /** Queries read whose answers are not written yet. */
  #queued = 0;
  /** Of those, the ones still waiting for their answer. */
  #answering = 0;
  #closed = false;
  #draining = false;
  #writing: Promise<unknown> = Promise.resolve();
  #idle: ReturnType<typeof setTimeout> | undefined;
  #readDeadline: ReturnType<typeof setTimeout> | undefined;
  #resume: (() => void) | undefined;
  #onClosed!: () => void;
  #whenClosed = new Promise<void>((r) => this.#onClosed = r);

  constructor(
    conn: Deno.TcpConn,
    slot: ListenerSlot,
    handle: QueryHandler,
    limits: TcpLimits,
    onLimit: LimitCounter,
  ) {
    this.#conn = conn;
    this.#slot = slot;
    this.#handle = handle;
    this.#limits = limits;
    this.#onLimit = onLimit;
    const remote = conn.remoteAddr as Deno.NetAddr;
    this.#client = { address: remote.hostname, port: remote.port, transport: "tcp" };
  }

  /** Closes the connection now. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#idle);
    clearTimeout(this.#readDeadline);
    this.#resume?.();
    try {
      this.#conn.close();
    } catch { /* already closed */ }
    this.#onClosed();
  }

  /** Takes no more queries; closes once every taken query is answered. */
  drain(): void {
    this.#draining = true;
    if (this.#queued === 0) this.close();
  }

  /** Activity: the idle time starts again. Queries waiting upstream keep a connection open. */
  #arm(): void {
    clearTimeout(this.#idle);
    this.#idle = setTimeout(
      () => this.#answering === 0 ? this.close() : this.#arm(),
      this.#limits.tcpIdleMs,
    );
  }

  #write(msg: Uint8Array): void {
    const frame = tcpFrame(msg);
    // Replies go out whole and one at a time, in the order their answers complete. A query
    // counts against the pipeline bound until its reply is written: a client that does not
    // read its answers stops being read.
    this.#writing = this.#writing.then(async () => {
      let off = 0;
      while (off < frame.length && !this.#closed) {
        off += await this.#conn.write(frame.subarray(off));
        this.#arm();
      }
    }).catch(() => this.close()).finally(() => this.#done());
  }

  #done(): void {
    this.#queued--;
    const resume = this.#resume;
    this.#resume = undefined;
    resume?.();
    if (this.#draining && this.#queued === 0) this.close();
  }

  #take(msg: Uint8Array): void {
    this.#queued++;
    this.#answering++;
    Promise.resolve(this.#handle(msg, this.#client, this.#slot))
      .then((reply) => {
        this.#answering--;
        if (reply && !this.#closed) return this.#write(reply);
        if (!reply) this.close(); // unreadable query: RFC 7766 §8 lets us close
        this.#done();
      }, () => {
        this.#answering--;
        this.close();
        this.#done();
      });
  }

  /** Reads and answers until the client or pvdns closes the connection. */
  async serve(): Promise<void> {
    this.#arm();
    let buf = new Uint8Array(0);
    const chunk = new Uint8Array(65537);
    try {
      while (!this.#closed) {
        const n = await this.#conn.read(chunk);
        if (n === null) break;
        this.#arm();
        if (this.#draining) continue; // graceful stop: nothing new is taken
        const next = new Uint8Array(buf.length + n);
        next.set(buf);
        next.set(chunk.subarray(0, n), buf.length);
        buf = next;
        while (buf.length >= 2 && !this.#closed) {
          const len = (buf[0]! << 8) | buf[1]!;
          if (buf.length < 2 + len) break;
          if (this.#queued >= this.#limits.tcpPipeline) {
            this.#onLimit("tcp_pipeline");
            await new Promise<void>((r) => this.#resume = r);
            if (this.#closed || this.#draining) break;
          }
          const msg = buf.slice(2, 2 + len);
          buf = buf.subarray(2 + len);
          this.#take(msg);
        }
        // A message has started: it must be complete in time, however slowly its bytes come.
        if (buf.length === 0) {
          clearTimeout(this.#readDeadline);
          this.#readDeadline = undefined;
        } else if (this.#readDeadline === undefined) {
          this.#readDeadline = setTimeout(() => {
            this.#onLimit("tcp_read_timeout");
            this.close();
          }, this.#limits.tcpReadMs);
        }
      }
    } catch {
      // reset by peer, or closed by us
    }
    // The client half-closed: let pending answers go out, then close.
    this.drain();
    await this.#whenClosed;
  }
}

/**
 * DNS over TCP framing for test servers and clients (RFC 1035 §4.2.2, RFC 7766 §8): every message
 * behind a two-byte length, several per read or one across reads.
 *
 * @module
 */

import { tcpFrame } from "../src/dns/wire.ts";

/** `message` behind its two-byte length (pvdns's own framing, re-exported for test servers). */
export { tcpFrame };

/**
 * The messages read from `conn`, one at a time, until the peer closes; a partial message at the
 * end is dropped. A read error (reset, closed) is thrown to the loop.
 *
 * @example
 * ```ts ignore
 * for await (const query of readTcpFrames(conn)) await writeAll(conn, tcpFrame(answer(query)));
 * ```
 */
export async function* readTcpFrames(conn: Deno.Conn): AsyncGenerator<Uint8Array> {
  let buf = new Uint8Array(0);
  const chunk = new Uint8Array(65_537);
  for (;;) {
    const n = await conn.read(chunk);
    if (n === null) return;
    const next = new Uint8Array(buf.length + n);
    next.set(buf);
    next.set(chunk.subarray(0, n), buf.length);
    buf = next;
    while (buf.length >= 2) {
      const len = (buf[0]! << 8) | buf[1]!;
      if (buf.length < 2 + len) break;
      const message = buf.subarray(2, 2 + len);
      buf = buf.slice(2 + len);
      yield message;
    }
  }
}

/** Writes all of `bytes` to `conn` (one `write` may take only part). */
export async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let off = 0; off < bytes.length;) off += await conn.write(bytes.subarray(off));
}

/** A DNS-over-TCP client for tests: writes framed queries, reads whole replies. */
export class TcpDnsClient {
  /** The connection. */
  readonly conn: Deno.TcpConn;
  #frames: AsyncGenerator<Uint8Array>;

  /** Wraps an open connection. */
  constructor(conn: Deno.TcpConn) {
    this.conn = conn;
    this.#frames = readTcpFrames(conn);
  }

  /** Connects to `address:port`. */
  static async open(address: string, port = 53): Promise<TcpDnsClient> {
    return new TcpDnsClient(await Deno.connect({ hostname: address, port }));
  }

  /** Writes the messages, each behind its length, in one write. */
  async send(...messages: Uint8Array[]): Promise<void> {
    await writeAll(this.conn, new Uint8Array(messages.flatMap((m) => [...tcpFrame(m)])));
  }

  /** The next reply, or null when the connection was closed (or reset). */
  async read(): Promise<Uint8Array | null> {
    const next = await this.#frames.next().catch(() => ({ done: true, value: undefined }));
    return next.value ?? null;
  }

  /** Closes the connection (again is fine). */
  close(): void {
    try {
      this.conn.close();
    } catch { /* closed */ }
  }
}

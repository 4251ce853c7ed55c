/**
 * Do53 over TCP (RFC 7766): the 2-byte length prefix, from a socket bound to the PvD's source
 * address. `node:net` is used because it honours `localAddress` under Deno (`Deno.connect` has
 * no such option). One connection per exchange for now; reuse and pipelining come with the
 * encrypted transports.
 *
 * @module
 */

import { Socket } from "node:net";
import type { LeakGuard } from "../policy/leak_guard.ts";
import type { ServerConfig } from "../resolver/config_types.ts";
import { answersQuery } from "../resolver/wire.ts";
import { abortError, type ExchangeOptions, type Transport, TransportError } from "./transport.ts";

/** Options of {@linkcode TcpTransport}. */
export interface TcpTransportOptions {
  /** The PvD this transport serves. */
  readonly pvd: string;
  readonly server: ServerConfig;
  /** Local address to bind. */
  readonly source: string;
  readonly guard: LeakGuard;
}

/** Do53 over TCP to one server of one PvD. */
export class TcpTransport implements Transport {
  /** Always `"tcp"`. */
  readonly protocol = "tcp" as const;
  /** The server. */
  readonly server: ServerConfig;
  /** The bound local address. */
  readonly source: string;
  #pvd: string;
  #guard: LeakGuard;
  #open = new Set<Socket>();

  /** Creates the transport; connections are opened per exchange. */
  constructor(options: TcpTransportOptions) {
    if (!options.server.address) throw new TypeError("A TCP server needs an IP address");
    this.server = options.server;
    this.source = options.source;
    this.#pvd = options.pvd;
    this.#guard = options.guard;
  }

  /** Connects, sends `query` and waits for its answer. */
  async exchange(query: Uint8Array, { signal }: ExchangeOptions): Promise<Uint8Array> {
    const address = this.server.address!;
    const port = this.server.port;
    this.#guard.check(this.#pvd, address, port, this.source);
    if (signal.aborted) throw abortError(signal);
    return await new Promise<Uint8Array>((resolve, reject) => {
      const socket = new Socket();
      this.#open.add(socket);
      let buffered = new Uint8Array(0);
      const finish = (err: Error | null, value?: Uint8Array) => {
        signal.removeEventListener("abort", onAbort);
        this.#open.delete(socket);
        socket.destroy();
        if (err) reject(err);
        else resolve(value!);
      };
      const onAbort = () => finish(abortError(signal));
      signal.addEventListener("abort", onAbort, { once: true });
      socket.on("error", (e: Error & { code?: string }) =>
        finish(
          new TransportError(e.code === "ECONNREFUSED" ? "refused" : "closed", e.message, {
            cause: e,
          }),
        ));
      socket.on("close", () => finish(new TransportError("closed", "connection closed")));
      socket.on("data", (chunk: Uint8Array) => {
        const next = new Uint8Array(buffered.length + chunk.length);
        next.set(buffered);
        next.set(chunk, buffered.length);
        buffered = next;
        while (buffered.length >= 2) {
          const len = (buffered[0]! << 8) | buffered[1]!;
          if (buffered.length < 2 + len) break;
          const msg = buffered.slice(2, 2 + len);
          buffered = buffered.subarray(2 + len);
          if (answersQuery(query, msg)) return finish(null, msg);
        }
      });
      socket.connect({ host: address, port, localAddress: this.source }, () => {
        const frame = new Uint8Array(2 + query.length);
        frame[0] = query.length >> 8;
        frame[1] = query.length & 0xff;
        frame.set(query, 2);
        socket.write(frame);
      });
    });
  }

  /** Destroys any open connection. */
  close(): Promise<void> {
    for (const s of this.#open) s.destroy();
    this.#open.clear();
    return Promise.resolve();
  }
}

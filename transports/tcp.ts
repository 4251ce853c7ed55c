/**
 * Do53 over TCP (RFC 7766): length-prefixed messages on connections bound to the PvD's source
 * address, reused across queries and pipelined, closed when idle, reopened when the server
 * closes them, at most `maxConnections` at once (see `_stream.ts`). `node:net` is used because
 * it honours `localAddress` under Deno (`Deno.connect` has no such option).
 *
 * @module
 */

import { Socket } from "node:net";
import type { ServerConfig } from "../resolver/config_types.ts";
import { type StreamLimits, StreamPool } from "./_stream.ts";
import {
  abortError,
  type ExchangeOptions,
  hostPort,
  type SendGuard,
  type Transport,
  type TransportOptions,
} from "./transport.ts";

/** Options of {@linkcode TcpTransport}. */
export interface TcpTransportOptions extends TransportOptions, StreamLimits {}

/**
 * Do53 over TCP to one server of one PvD.
 *
 * @example Usage
 * ```ts ignore
 * const tcp = new TcpTransport({ pvd: "home", server, source: "192.0.2.10", guard });
 * const answer = await tcp.exchange(query, { signal: AbortSignal.timeout(2000) });
 * await tcp.close();
 * ```
 */
export class TcpTransport implements Transport {
  /** Always `"tcp"`. */
  readonly protocol = "tcp" as const;
  /** The server. */
  readonly server: ServerConfig;
  /** The bound local address. */
  readonly source: string;
  #pvd: string;
  #guard: SendGuard;
  #pool: StreamPool;

  /** Creates the transport; the first exchange opens the first connection. */
  constructor(options: TcpTransportOptions) {
    const address = options.server.address;
    if (!address) throw new TypeError("A TCP server needs an IP address");
    this.server = options.server;
    this.source = options.source;
    this.#pvd = options.pvd;
    this.#guard = options.guard;
    const port = options.server.port;
    this.#pool = new StreamPool({
      ...options,
      describe: `tcp ${hostPort(address, port)}`,
      open: () => {
        this.#guard.check(this.#pvd, address, port, this.source); // every connect
        const socket = new Socket();
        socket.setNoDelay(true);
        socket.connect({ host: address, port, localAddress: this.source });
        return { socket, ready: "connect" };
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

/**
 * DNS over TLS (RFC 7858) to `tls://ADDR[:PORT]#AUTH-NAME`: the certificate must be valid for
 * AUTH-NAME (also sent as SNI) and chain to the system's roots or to the PvD's `caFile`; a
 * failed handshake (wrong name, expired, unknown CA) fails the exchange with reason `tls`, and
 * nothing is ever sent in clear instead. Connections are bound to the PvD's source address,
 * reused and pipelined like Do53 over TCP (`_stream.ts`). `node:tls` is used because it honours
 * `localAddress` under Deno (`Deno.connectTls` has no such option).
 *
 * @module
 */

import tls from "node:tls";
import type { ServerConfig } from "../resolver/config_types.ts";
import { type StreamLimits, StreamPool } from "./_stream.ts";
import { trustAnchors } from "./_trust.ts";
import {
  abortError,
  type ExchangeOptions,
  hostPort,
  type SendGuard,
  type Transport,
  type TransportOptions,
} from "./transport.ts";

/** Options of {@linkcode TlsTransport}. */
export interface TlsTransportOptions extends TransportOptions, StreamLimits {
  /** Extra trust anchors (PEM texts) besides the system's roots: the PvD's `caFile`. */
  readonly ca?: readonly string[];
}

/**
 * DoT to one server of one PvD.
 *
 * @example Usage
 * ```ts ignore
 * const server = parseServer("tls://192.0.2.1#dns.example.net");
 * const dot = new TlsTransport({ pvd: "home", server, source: "192.0.2.10", guard });
 * const answer = await dot.exchange(query, { signal: AbortSignal.timeout(2000) });
 * await dot.close();
 * ```
 */
export class TlsTransport implements Transport {
  /** Always `"tls"`. */
  readonly protocol = "tls" as const;
  /** The server. */
  readonly server: ServerConfig;
  /** The bound local address. */
  readonly source: string;
  #pvd: string;
  #guard: SendGuard;
  #pool: StreamPool;

  /** Creates the transport; the first exchange opens the first connection. */
  constructor(options: TlsTransportOptions) {
    const { address, authName, port } = options.server;
    if (!address) throw new TypeError("A DoT server needs an IP address");
    if (!authName) throw new TypeError("A DoT server needs an authentication name");
    this.server = options.server;
    this.source = options.source;
    this.#pvd = options.pvd;
    this.#guard = options.guard;
    const ca = trustAnchors(options.ca);
    this.#pool = new StreamPool({
      ...options,
      describe: `tls ${hostPort(address, port)}#${authName}`,
      open: () => {
        this.#guard.check(this.#pvd, address, port, this.source); // every connect
        // node:tls passes localAddress on to the TCP connect (its types omit it).
        const connect: tls.ConnectionOptions & { localAddress: string } = {
          host: address,
          port,
          localAddress: this.source,
          servername: authName, // SNI, and the name the certificate must carry
          ca,
          rejectUnauthorized: true,
        };
        const socket = tls.connect(connect);
        socket.setNoDelay(true);
        return { socket, ready: "secureConnect" };
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

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
import { type StreamLimits, StreamTransport } from "./_stream.ts";
import { trustAnchors } from "./_trust.ts";
import { padMessage, QUERY_BLOCK } from "../dns/padding.ts";
import type { ExchangeOptions, Transport, TransportOptions } from "./transport.ts";

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
export class TlsTransport extends StreamTransport implements Transport {
  /** Always `"tls"`. */
  readonly protocol = "tls" as const;

  /** Creates the transport; the first exchange opens the first connection. */
  constructor(options: TlsTransportOptions) {
    const { address, authName } = options.server;
    if (!address) throw new TypeError("A DoT server needs an IP address");
    if (!authName) throw new TypeError("A DoT server needs an authentication name");
    const ca = trustAnchors(options.ca);
    super(options, {
      name: "DoT",
      describe: (hostPort) => `tls ${hostPort}#${authName}`,
      connect: (host, port) => {
        // node:tls passes localAddress on to the TCP connect (its types omit it).
        const connect: tls.ConnectionOptions & { localAddress: string } = {
          host,
          port,
          localAddress: options.source,
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

  /** Sends `query` padded to a multiple of 128 octets (RFC 8467) and waits for its answer. */
  override exchange(query: Uint8Array, options: ExchangeOptions): Promise<Uint8Array> {
    return super.exchange(padMessage(query, QUERY_BLOCK), options);
  }
}

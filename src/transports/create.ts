/**
 * One factory over the four wires, switching on the server's protocol (CoreDNS's
 * `NewHealthChecker` / hickory's `ConnectionProvider` shape).
 *
 * @module
 */

import type { StreamLimits } from "./_stream.ts";
import { type HostResolver, HttpsTransport } from "./https.ts";
import { TcpTransport } from "./tcp.ts";
import { TlsTransport } from "./tls.ts";
import type { Transport, TransportOptions } from "./transport.ts";
import { UdpTransport } from "./udp.ts";

/** Options of {@linkcode createTransport}. */
export interface CreateTransportOptions extends TransportOptions, StreamLimits {
  /** Extra trust anchors (PEM texts) for tls and https: the PvD's and the config's `caFile`. */
  readonly ca?: readonly string[];
  /** How an `https://HOST/PATH` server's HOST is looked up (the PvD's own Do53 servers). */
  readonly resolve?: HostResolver;
}

/**
 * The transport for `options.server`'s protocol. A `udp` server gets the UDP wire only; asking
 * again over TCP after a truncated answer is the caller's business.
 *
 * @example Usage
 * ```ts ignore
 * const t = createTransport({ pvd: "home", server: parseServer("tls://192.0.2.1#dns.example.net"), source: "192.0.2.10", guard });
 * ```
 */
export function createTransport(options: CreateTransportOptions): Transport {
  switch (options.server.protocol) {
    case "udp":
      return new UdpTransport(options);
    case "tcp":
      return new TcpTransport(options);
    case "tls":
      return new TlsTransport(options);
    case "https":
      return new HttpsTransport(options);
  }
}

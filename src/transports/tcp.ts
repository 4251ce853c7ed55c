/**
 * Do53 over TCP (RFC 7766): length-prefixed messages on connections bound to the PvD's source
 * address, reused across queries and pipelined, closed when idle, reopened when the server
 * closes them, at most `maxConnections` at once (see `_stream.ts`). `node:net` is used because
 * it honours `localAddress` under Deno (`Deno.connect` has no such option).
 *
 * @module
 */

import { Socket } from "node:net";
import { type StreamLimits, StreamTransport } from "./_stream.ts";
import type { Transport, TransportOptions } from "./transport.ts";

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
export class TcpTransport extends StreamTransport implements Transport {
  /** Always `"tcp"`. */
  readonly protocol = "tcp" as const;

  /** Creates the transport; the first exchange opens the first connection. */
  constructor(options: TcpTransportOptions) {
    super(options, {
      name: "TCP",
      describe: (hostPort) => `tcp ${hostPort}`,
      connect: (host, port) => {
        const socket = new Socket();
        socket.setNoDelay(true);
        socket.connect({ host, port, localAddress: options.source });
        return { socket, ready: "connect" };
      },
    });
  }
}

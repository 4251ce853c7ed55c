/**
 * The plain UDP listener (`Deno.listenDatagram`, which answered about twice the queries per CPU
 * second of `node:dgram` under Deno: bench/README.md, "The listener"). The batched one for
 * Linux is `listen/udp_mmsg.ts`.
 *
 * @module
 */

import {
  type DnsListener,
  hostPort,
  ignore,
  type ListenerSlot,
  MAX_UDP_QUERY,
  type QueryHandler,
} from "./listener.ts";

/** Binds a UDP listener and serves queries until closed. */
export function startUdpListener(
  slot: ListenerSlot,
  handle: QueryHandler,
  log: (line: string) => void,
): DnsListener {
  const listener = slot.listener;
  const conn = Deno.listenDatagram({
    hostname: listener.address,
    port: listener.port,
    transport: "udp",
  });
  const port = (conn.addr as Deno.NetAddr).port;
  let closed = false;
  let stopped = false;
  // One buffer for every datagram (receive() alone would allocate 64 KiB each time); a query is
  // copied out of it, since its answer may come later. One byte more than the bound tells a
  // datagram over MAX_UDP_QUERY.
  const buffer = new Uint8Array(MAX_UDP_QUERY + 1);
  const loop = (async () => {
    while (!closed) {
      let data: Uint8Array, addr: Deno.Addr;
      try {
        [data, addr] = await conn.receive(buffer);
      } catch (e) {
        if (closed) return;
        log(
          `pvdns: udp ${hostPort(listener.address, port)} receive failed: ${(e as Error).message}`,
        );
        continue;
      }
      if (stopped) continue; // graceful stop: taken queries are answered, new ones are not
      if (data.length > MAX_UDP_QUERY) continue;
      data = data.slice();
      const from = addr as Deno.NetAddr;
      const reply = handle(
        data,
        { address: from.hostname, port: from.port, transport: "udp" },
        slot,
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
    stop() {
      stopped = true;
      return Promise.resolve();
    },
    async close() {
      closed = true;
      conn.close();
      await loop;
    },
  };
}

/**
 * A slow upstream for the soak (`bench/soak.ts`): a small forwarder on its own loopback address,
 * port 53, UDP and TCP, that holds every query for a random 100–300 ms (seeded, so runs repeat)
 * before passing it to a real server (a dnsmasq) and relaying the answer back. Simpler than a
 * network namespace with `tc qdisc netem`, and it stays on loopback.
 *
 * It also records which addresses queries came from: the soak checks that only the PvD's own
 * source address asked it.
 *
 * @module
 */

import { mulberry32 } from "../testkit/prng.ts";

/** Options of {@linkcode startSlowUpstream}. */
export interface SlowUpstreamOptions {
  /** Loopback address to listen on (port 53, UDP and TCP). */
  address: string;
  /** The real server behind it, `ADDR` (port 53). */
  server: string;
  /** @default 100 */
  minDelayMs?: number;
  /** @default 300 */
  maxDelayMs?: number;
  /** Seed of the delays. @default 8 */
  seed?: number;
  /** UDP queries held at once at most; more are dropped (and counted). @default 4096 */
  maxPending?: number;
  /** Wait this long for the real server's answer to one UDP query. @default 3000 */
  serverTimeoutMs?: number;
}

/** What the forwarder saw. */
export interface SlowUpstreamStats {
  udpQueries: number;
  udpAnswered: number;
  /** Over `maxPending`. */
  udpDropped: number;
  /** The real server did not answer in `serverTimeoutMs`, or the socket failed. */
  udpFailed: number;
  tcpConnections: number;
  /** UDP queries by client address. */
  sources: Record<string, number>;
}

/** A running slow upstream. */
export interface SlowUpstream {
  readonly address: string;
  stats(): SlowUpstreamStats;
  /** Closes the listeners and every connection, and waits for the pending queries to end. */
  stop(): Promise<void>;
}

/** Starts the forwarder; it is listening when this returns. */
export function startSlowUpstream(o: SlowUpstreamOptions): SlowUpstream {
  const min = o.minDelayMs ?? 100;
  const max = o.maxDelayMs ?? 300;
  const random = mulberry32(o.seed ?? 8);
  const delay = () => min + Math.floor(random() * (max - min + 1));
  const maxPending = o.maxPending ?? 4096;
  const serverTimeoutMs = o.serverTimeoutMs ?? 3000;
  const stats: SlowUpstreamStats = {
    udpQueries: 0,
    udpAnswered: 0,
    udpDropped: 0,
    udpFailed: 0,
    tcpConnections: 0,
    sources: {},
  };
  let closed = false;
  const pending = new Set<Promise<void>>();
  const conns = new Set<Deno.Conn>();
  const connTasks = new Set<Promise<void>>();
  const sockets = new Set<Deno.DatagramConn>();
  /** Pending delays: stop() ends each at once. */
  const sleepers = new Map<ReturnType<typeof setTimeout>, () => void>();
  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        sleepers.delete(t);
        resolve();
      }, ms);
      sleepers.set(t, resolve);
    });

  const udp = Deno.listenDatagram({ hostname: o.address, port: 53, transport: "udp" });
  const tcp = Deno.listen({ hostname: o.address, port: 53, transport: "tcp" });

  /** One UDP query: wait, ask the server from a fresh socket, relay its one answer. */
  const relay = async (query: Uint8Array, client: Deno.NetAddr) => {
    await sleep(delay());
    if (closed) return;
    const sock = Deno.listenDatagram({ hostname: o.address, port: 0, transport: "udp" });
    sockets.add(sock);
    const timer = setTimeout(() => sock.close(), serverTimeoutMs);
    try {
      await sock.send(query, { hostname: o.server, port: 53, transport: "udp" });
      const [answer] = await sock.receive();
      if (!closed) {
        await udp.send(answer, client);
        stats.udpAnswered++;
      }
    } catch {
      stats.udpFailed++;
    } finally {
      clearTimeout(timer);
      sockets.delete(sock);
      try {
        sock.close();
      } catch { /* closed by the timer or stop() */ }
    }
  };

  const udpLoop = (async () => {
    while (!closed) {
      let datagram: [Uint8Array, Deno.Addr];
      try {
        datagram = await udp.receive();
      } catch {
        return; // closed
      }
      const from = datagram[1] as Deno.NetAddr;
      stats.udpQueries++;
      stats.sources[from.hostname] = (stats.sources[from.hostname] ?? 0) + 1;
      if (pending.size >= maxPending) {
        stats.udpDropped++;
        continue;
      }
      const p = relay(datagram[0], from).finally(() => pending.delete(p));
      pending.add(p);
    }
  })();

  /** One TCP connection: client bytes are held `delay()` each, in order; answers flow back. */
  const serveConn = async (client: Deno.Conn) => {
    conns.add(client);
    let server: Deno.Conn | undefined;
    try {
      server = await Deno.connect({ hostname: o.server, port: 53 });
      conns.add(server);
      const back = server.readable.pipeTo(client.writable).catch(() => {});
      const writer = server.writable.getWriter();
      for await (const chunk of client.readable) {
        await sleep(delay());
        if (closed) break;
        await writer.write(chunk);
      }
      await writer.close().catch(() => {});
      await back;
    } catch {
      /* either side went away */
    } finally {
      for (const c of [client, server]) {
        if (!c) continue;
        conns.delete(c);
        try {
          c.close();
        } catch { /* closed */ }
      }
    }
  };

  const tcpLoop = (async () => {
    while (!closed) {
      let conn: Deno.Conn;
      try {
        conn = await tcp.accept();
      } catch {
        return; // closed
      }
      stats.tcpConnections++;
      const task = serveConn(conn).finally(() => connTasks.delete(task));
      connTasks.add(task);
    }
  })();

  return {
    address: o.address,
    stats: () => structuredClone(stats),
    async stop() {
      if (closed) return;
      closed = true;
      udp.close();
      tcp.close();
      for (const c of [...conns, ...sockets]) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      for (const [t, wake] of sleepers) {
        clearTimeout(t);
        wake();
      }
      sleepers.clear();
      await Promise.all([udpLoop, tcpLoop, ...pending, ...connTasks]);
    },
  };
}

/**
 * A hostile test upstream: one loopback address, UDP and TCP on the same port, and for each
 * query name a behaviour the test picks — answer with a wrong ID, a wrong question, from
 * another address or port, garbage, a message cut in the middle of a record, a compression
 * loop, records for other names (a poisoning attempt), a huge TTL, a 64 KB answer over TCP
 * after TC over UDP, or never. It logs every query it received and what it did with it.
 *
 * The behaviours and the crafted answers are in hostile_answers.ts, the byte-by-byte message
 * builders in message_wire.ts; this file is the server.
 *
 * @module
 */

import { mulberry32 } from "./prng.ts";
import {
  bigAnswer,
  goodAnswer,
  type HostileBehaviour,
  type Incoming,
  loopAnswer,
  POISON_ANSWER,
  poisonAnswer,
  readQuery,
  replyFlags,
  truncatedAnswer,
} from "./hostile_answers.ts";
import { messageWire, questionWire } from "./message_wire.ts";
import { readTcpFrames, tcpFrame, writeAll } from "./tcp_frames.ts";

/** One query the server received, and what it did. */
export interface HostileEvent {
  readonly wire: "udp" | "tcp";
  /** Question name, lower case, no trailing dot. */
  readonly name: string;
  readonly qtype: number;
  /** Sender address. */
  readonly from: string;
  /** What was done, in words (`silent`, `sent wrong-id …`). */
  readonly action: string;
}

/** Options of {@linkcode startHostileUpstream}. */
export interface HostileUpstreamOptions {
  /** Loopback address for UDP and TCP. */
  readonly address: string;
  /** @default 53 */
  readonly port?: number;
  /** A second address whose same port the `other-address` answers come from. */
  readonly otherAddress?: string;
  /** What is done with names no {@linkcode HostileUpstream.on} call named. @default silent */
  readonly fallback?: HostileBehaviour;
  /** Seed of the garbage bytes. @default 8 */
  readonly seed?: number;
}

/** A running hostile upstream. */
export interface HostileUpstream {
  readonly address: string;
  readonly port: number;
  /** Sets the behaviour for queries of `name` (any type; case and trailing dot ignored). */
  on(name: string, behaviour: HostileBehaviour): void;
  /** Every query received, oldest first. */
  readonly events: readonly HostileEvent[];
  /** Queries received for `name`, over `wire` or both. */
  received(name: string, wire?: "udp" | "tcp"): HostileEvent[];
  /** Stops every socket. */
  close(): Promise<void>;
}

/** Startup errors aside, never throws: a failed send is logged as such. */
export function startHostileUpstream(options: HostileUpstreamOptions): HostileUpstream {
  const { address } = options;
  const port = options.port ?? 53;
  const udp = Deno.listenDatagram({ hostname: address, port, transport: "udp" });
  const tcp = Deno.listen({ hostname: address, port, transport: "tcp" });
  const otherPort = Deno.listenDatagram({ hostname: address, port: 0, transport: "udp" });
  const otherAddress = options.otherAddress
    ? Deno.listenDatagram({ hostname: options.otherAddress, port, transport: "udp" })
    : undefined;
  const behaviours = new Map<string, HostileBehaviour>();
  const fallback = options.fallback ?? { kind: "silent" };
  const events: HostileEvent[] = [];
  const random = mulberry32(options.seed ?? 8);
  const conns = new Set<Deno.Conn>();
  const tasks: Promise<void>[] = [];

  const behaviourOf = (name: string) => behaviours.get(name) ?? fallback;

  /** What to send for `q` over `wire`: messages (each one datagram or one TCP frame). */
  const respond = (
    b: HostileBehaviour,
    q: Incoming,
    wire: "udp" | "tcp",
  ): { action: string; messages: Uint8Array[]; via?: Deno.DatagramConn; raw?: Uint8Array } => {
    switch (b.kind) {
      case "silent":
        return { action: "silent", messages: [] };
      case "answer":
        return {
          action: `answered ${b.address ?? POISON_ANSWER} ttl ${b.ttl ?? 300}`,
          messages: [goodAnswer(q, b.address, b.ttl)],
        };
      case "rcode":
        return {
          action: `rcode ${b.rcode}`,
          messages: [
            messageWire({ id: q.id, flags: replyFlags(q, b.rcode), question: q.question }),
          ],
        };
      case "wrong-id": {
        const m = goodAnswer({ ...q, id: (q.id + 1) & 0xffff });
        return { action: `wrong id ${(q.id + 1) & 0xffff} for ${q.id}`, messages: [m] };
      }
      case "wrong-question": {
        const other = b.change === "name"
          ? questionWire(`evil-${q.name}`, q.qtype, q.qclass)
          : b.change === "type"
          ? questionWire(q.name, q.qtype === 1 ? 28 : 1, q.qclass)
          : questionWire(q.name, q.qtype, 3); // CH
        return {
          action: `wrong question (${b.change})`,
          messages: [goodAnswer({ ...q, question: other })],
        };
      }
      case "other-port":
      case "other-address": {
        if (wire === "tcp") return { action: `${b.kind}: silent over tcp`, messages: [] };
        const via = b.kind === "other-port" ? otherPort : otherAddress;
        if (!via) throw new Error("other-address needs options.otherAddress");
        const from = via.addr as Deno.NetAddr;
        return {
          action: `answered from ${from.hostname}:${from.port}`,
          messages: [goodAnswer(q)],
          via,
        };
      }
      case "garbage": {
        const m = new Uint8Array(b.bytes ?? 200);
        for (let i = 0; i < m.length; i++) m[i] = Math.floor(random() * 256);
        m[0] = q.id >> 8;
        m[1] = q.id & 0xff;
        m[2]! |= 0x80;
        return { action: `garbage ${m.length} bytes`, messages: [m] };
      }
      case "truncated": {
        const cut = truncatedAnswer(q);
        return { action: `truncated to ${cut.length} bytes`, messages: [cut] };
      }
      case "compression-loop":
        return { action: `compression loop (${b.loop})`, messages: [loopAnswer(q, b.loop)] };
      case "poison":
        return { action: "poison", messages: [poisonAnswer(q, b)] };
      case "big":
      case "tc": {
        if (wire === "udp") {
          const m = messageWire({ id: q.id, flags: replyFlags(q, 0x0200), question: q.question });
          return { action: "tc", messages: [m] };
        }
        if (b.kind === "tc") return respond(b.tcp, q, wire);
        const m = bigAnswer(q, b.size ?? 65_000);
        return { action: `big ${m.length} bytes`, messages: [m] };
      }
      case "short-frame": {
        if (wire === "udp") return { action: "short-frame: silent over udp", messages: [] };
        const raw = new Uint8Array(102);
        raw[0] = 0xff;
        raw[1] = 0xff;
        raw.set(goodAnswer(q).subarray(0, 100), 2);
        return { action: "short frame (65535 promised, 100 sent)", messages: [], raw };
      }
    }
  };

  const udpLoop = (async () => {
    try {
      for (;;) {
        const [data, from] = await udp.receive();
        const q = readQuery(data);
        if (!q) continue;
        const f = from as Deno.NetAddr;
        const r = respond(behaviourOf(q.name), q, "udp");
        events.push({
          wire: "udp",
          name: q.name,
          qtype: q.qtype,
          from: f.hostname,
          action: r.action,
        });
        for (const m of r.messages) {
          await (r.via ?? udp).send(m, from).catch(() => {});
        }
      }
    } catch { /* closed */ }
  })();

  const serveConn = async (conn: Deno.Conn) => {
    const peer = (conn.remoteAddr as Deno.NetAddr).hostname;
    try {
      for await (const message of readTcpFrames(conn)) {
        const q = readQuery(message);
        if (!q) continue;
        const r = respond(behaviourOf(q.name), q, "tcp");
        events.push({ wire: "tcp", name: q.name, qtype: q.qtype, from: peer, action: r.action });
        for (const m of r.messages) await writeAll(conn, tcpFrame(m));
        if (r.raw) await writeAll(conn, r.raw);
      }
    } catch { /* reset or closed */ }
    conns.delete(conn);
    try {
      conn.close();
    } catch { /* closed */ }
  };
  const tcpLoop = (async () => {
    try {
      for await (const conn of tcp) {
        conns.add(conn);
        tasks.push(serveConn(conn));
      }
    } catch { /* closed */ }
  })();

  return {
    address,
    port,
    on(name, behaviour) {
      behaviours.set(name.toLowerCase().replace(/\.$/, ""), behaviour);
    },
    events,
    received(name, wire) {
      const n = name.toLowerCase().replace(/\.$/, "");
      return events.filter((e) => e.name === n && (wire === undefined || e.wire === wire));
    },
    async close() {
      for (const s of [udp, otherPort, otherAddress]) {
        try {
          s?.close();
        } catch { /* closed */ }
      }
      try {
        tcp.close();
      } catch { /* closed */ }
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      await Promise.all([udpLoop, tcpLoop]);
      await Promise.all(tasks);
    },
  };
}

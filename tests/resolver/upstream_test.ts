import assert from "node:assert/strict";
import * as packet from "dns-packet";
import { Buffer } from "node:buffer";
import { LeakGuard } from "../../policy/leak_guard.ts";
import type { PvdConfig } from "../../resolver/config_types.ts";
import { PvdUpstreams, UpstreamFailure } from "../../resolver/upstream.ts";
import { startDnsmasq } from "../_support/dnsmasq.ts";
import { loopbackAddress } from "../_support/loopback.ts";
import { bigTxt } from "../_support/wire.ts";

const CACHE = { maxEntries: 100, minTtl: 0, maxTtl: 86400, negativeMaxTtl: 3600, servfailTtl: 2 };
const Q = (qname: string, qtype = 1) => ({ qname, qtype, qclass: 1, do: false, cd: false });

function pvdFor(id: string, source: string, servers: string[]): PvdConfig {
  return {
    id,
    implicit: false,
    origin: "config",
    prefixes: [],
    sourceAddresses: [source],
    dnsZones: [],
    searchDomains: [],
    default: true,
    priority: 0,
    strictRoutes: false,
    servers: servers.map((a) => ({ text: a, protocol: "udp", address: a, family: 4, port: 53 })),
  };
}

/** A real UDP socket that reads queries and never answers: a black-holed server. */
function blackHole(address: string) {
  const at = address;
  const sock = Deno.listenDatagram({ hostname: address, port: 53, transport: "udp" });
  let seen = 0;
  const loop = (async () => {
    try {
      for (;;) {
        await sock.receive();
        seen++;
      }
    } catch { /* closed */ }
  })();
  return {
    address: at,
    get seen() {
      return seen;
    },
    async close() {
      sock.close();
      await loop;
    },
  };
}

Deno.test("PvdUpstreams fails over to the PvD's next server and learns to ask it first", async () => {
  const dead = loopbackAddress();
  const good = loopbackAddress();
  const source = loopbackAddress({ port: 0 });
  const hole = blackHole(dead);
  const dns = await startDnsmasq({
    address: good,
    zones: ["up.test"],
    records: [{ name: "a.up.test", type: "A", value: "192.0.2.5" }],
  });
  const pvd = pvdFor("home", source, [dead, good]);
  const up = new PvdUpstreams(pvd, {
    upstream: { timeoutMs: 300, deadlineMs: 2000 },
    cache: CACHE,
    guard: new LeakGuard([pvd]),
  });
  try {
    const r = await up.query(Q("a.up.test."));
    assert.equal(r.rcode, 0);
    assert.equal(hole.seen, 1, "the first server was tried once");
    assert.deepEqual(up.order.map((s) => s.address), [good, dead], "the failed server goes last");
    await up.query(Q("a.up.test.", 28));
    assert.equal(hole.seen, 1, "the next query went to the good server first");
    const log = await dns.queryLog();
    assert.ok(
      log.length >= 2 && log.every((q) => q.from === source),
      "every query came from the PvD's source address",
    );
  } finally {
    await up.close();
    await hole.close();
    await dns.stop();
  }
});

Deno.test("PvdUpstreams gives UpstreamFailure when every server of the PvD is dead, within the deadline", async () => {
  const a = blackHole(loopbackAddress());
  const b = loopbackAddress(); // nothing listens: ICMP port unreachable
  const source = loopbackAddress({ port: 0 });
  const pvd = pvdFor("vpn", source, [a.address, b]);
  const up = new PvdUpstreams(pvd, {
    upstream: { timeoutMs: 200, deadlineMs: 600 },
    cache: CACHE,
    guard: new LeakGuard([pvd]),
  });
  try {
    await assert.rejects(up.query(Q("x.test.")), (e) => {
      assert.ok(e instanceof UpstreamFailure);
      assert.equal(e.attempts.length, 2);
      return true;
    });
  } finally {
    await up.close();
    await a.close();
  }
});

Deno.test("PvdUpstreams ignores spoofed answers: wrong ID, wrong question, wrong source port", async () => {
  const address = loopbackAddress();
  const source = loopbackAddress({ port: 0 });
  const server = Deno.listenDatagram({ hostname: address, port: 53, transport: "udp" });
  const other = Deno.listenDatagram({ hostname: address, port: 0, transport: "udp" });
  const loop = (async () => {
    try {
      const [data, from] = await server.receive();
      const q = packet.decode(Buffer.from(data));
      const answer = (id: number, name: string, ip: string) =>
        new Uint8Array(packet.encode({
          type: "response",
          id,
          flags: packet.RECURSION_AVAILABLE,
          questions: [{ name, type: "A", class: "IN" }],
          answers: [{ type: "A", name, ttl: 60, data: ip }],
        }));
      const name = q.questions![0]!.name;
      await server.send(answer((q.id! + 1) & 0xffff, name, "203.0.113.1"), from); // wrong ID
      await server.send(answer(q.id!, "evil.test", "203.0.113.2"), from); // wrong question
      await other.send(answer(q.id!, name, "203.0.113.3"), from); // wrong source port
      await server.send(answer(q.id!, name, "192.0.2.44"), from); // the real one
    } catch { /* closed */ }
  })();
  const pvd = pvdFor("home", source, [address]);
  const up = new PvdUpstreams(pvd, {
    upstream: { timeoutMs: 1000, deadlineMs: 2000 },
    cache: CACHE,
    guard: new LeakGuard([pvd]),
  });
  try {
    const r = await up.query(Q("real.test."));
    const p = packet.decode(Buffer.from(r.wire));
    assert.deepEqual(p.answers?.map((a) => (a as { data: unknown }).data), ["192.0.2.44"]);
  } finally {
    await up.close();
    server.close();
    other.close();
    await loop;
  }
});

Deno.test("PvdUpstreams retries a truncated answer over TCP from the same source address", async () => {
  const address = loopbackAddress();
  const source = loopbackAddress({ port: 0 });
  const text = bigTxt("u");
  const dns = await startDnsmasq({
    address,
    zones: ["big.test"],
    records: [{ name: "t.big.test", type: "TXT", value: text }],
  });
  const pvd = pvdFor("home", source, [address]);
  const up = new PvdUpstreams(pvd, {
    upstream: { timeoutMs: 1000, deadlineMs: 3000 },
    cache: CACHE,
    guard: new LeakGuard([pvd]),
  });
  try {
    const r = await up.query(Q("t.big.test.", 16));
    const p = packet.decode(Buffer.from(r.wire));
    const got = (p.answers?.[0] as { data: Buffer[] }).data.map((b) => b.toString()).join("");
    assert.equal(got, text);
    const log = await dns.queryLog();
    assert.equal(log.length, 2, "once over UDP, once over TCP");
    assert.ok(log.every((q) => q.from === source));
  } finally {
    await up.close();
    await dns.stop();
  }
});

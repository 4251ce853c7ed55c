/**
 * Integration test of issue 2: the real `pvdns serve` between real clients (dig, dnspython, raw
 * packets) and two real dnsmasq upstreams on loopback, one per PvD, answering a shared name
 * differently (split horizon); plus a third PvD whose servers are dead.
 *
 * ```
 *  dig / dnspython ──► G (routes by zone) ──┬─ home.example  src HS ─► dnsmasq HU  home.test shared.test
 *                  ──► H (bound to home) ───┤
 *                  ──► V (bound to vpn)  ───┼─ vpn.example   src VS ─► dnsmasq VU  corp.test shared.test
 *                                           └─ dead.example  src DS ─► nothing / black hole (dead.test)
 * ```
 *
 * Every address is a distinct 127.x.y.z from loopbackAddress(); nothing leaves loopback.
 *
 * @module
 */

import assert from "node:assert/strict";
import { dig, txtStrings } from "../../testkit/dig.ts";
import { type Dnsmasq, type DnsmasqQuery, startDnsmasq } from "../../testkit/dnsmasq.ts";
import { dnspythonQuery, parseHeader, sendRawTcp, sendRawUdp } from "../../testkit/dnspython.ts";
import { sleep } from "../../testkit/exec.ts";
import { loopbackAddress } from "../../testkit/loopback.ts";
import { startPvdns } from "../../testkit/pvdns_process.ts";
import { bigTxt, buildQuery } from "../../testkit/wire.ts";

const RCODE_FORMERR = 1;

/** Log entries of `upstream` whose name is `name` (case-insensitive: a stub may use 0x20). */
async function queriesFor(upstream: Dnsmasq, name: string): Promise<DnsmasqQuery[]> {
  const n = name.toLowerCase().replace(/\.$/, "");
  return (await upstream.queryLog()).filter((e) => e.name.toLowerCase() === n);
}

/** A UDP socket that takes every datagram and never answers; remembers who sent what. */
function blackHole(address: string, port = 53) {
  const sock = Deno.listenDatagram({ transport: "udp", hostname: address, port });
  const received: { from: string; bytes: number }[] = [];
  const loop = (async () => {
    try {
      for (let i = 0; i < 10_000; i++) {
        const [data, from] = await sock.receive();
        received.push({ from: (from as Deno.NetAddr).hostname, bytes: data.length });
      }
    } catch { /* closed */ }
  })();
  return {
    received,
    async close() {
      sock.close();
      await loop;
    },
  };
}

Deno.test("pvdns serve: per-PvD routing, cache, TC, malformed input, dead upstream", async (t) => {
  // Upstreams and the PvDs' source addresses.
  const homeUp = loopbackAddress();
  const vpnUp = loopbackAddress();
  const deadRefused = loopbackAddress(); // nothing listens here: ICMP port unreachable
  const deadSilent = loopbackAddress(); // a socket that never answers
  const homeSrc = loopbackAddress({ port: 0 });
  const vpnSrc = loopbackAddress({ port: 0 });
  const deadSrc = loopbackAddress({ port: 0 });
  // pvdns listeners: G routes by zone, H and V are bound to one PvD each.
  const G = loopbackAddress();
  const H = loopbackAddress();
  const V = loopbackAddress();

  const big = bigTxt("b");
  const home = await startDnsmasq({
    address: homeUp,
    zones: ["home.test", "shared.test"],
    ttl: 300,
    records: [
      { name: "www.home.test", type: "A", value: "10.1.0.1" },
      { name: "www.home.test", type: "AAAA", value: "fd01::1" },
      { name: "cache.home.test", type: "A", value: "10.1.0.2" },
      { name: "www.shared.test", type: "A", value: "10.1.0.99" },
      { name: "big.home.test", type: "TXT", value: big },
    ],
  });
  const vpn = await startDnsmasq({
    address: vpnUp,
    zones: ["corp.test", "shared.test"],
    ttl: 300,
    records: [
      { name: "intra.corp.test", type: "A", value: "10.2.0.1" },
      { name: "www.shared.test", type: "A", value: "10.2.0.99" },
    ],
  });
  const hole = blackHole(deadSilent);
  const config = {
    listen: [
      `${G}:53`,
      { address: `${H}:53`, pvd: "home.example" },
      { address: `${V}:53`, pvd: "vpn.example" },
    ],
    pvds: [
      {
        id: "home.example",
        sourceAddresses: [homeSrc],
        servers: [homeUp],
        dnsZones: ["home.test"],
        default: true,
      },
      {
        id: "vpn.example",
        sourceAddresses: [vpnSrc],
        servers: [vpnUp],
        dnsZones: ["corp.test"],
      },
      {
        id: "dead.example",
        sourceAddresses: [deadSrc],
        servers: [deadRefused, deadSilent],
        dnsZones: ["dead.test"],
      },
    ],
    upstream: { timeoutMs: 400, deadlineMs: 1200 },
  };
  let pvdns;
  try {
    pvdns = await startPvdns({ config });
  } catch (e) {
    await home.stop();
    await vpn.stop();
    await hole.close();
    throw e;
  }

  try {
    await t.step("prints one listening line per listener, then ready", () => {
      assert.deepEqual(pvdns.listeners().sort(), [`${G}:53`, `${H}:53`, `${V}:53`].sort());
    });

    await t.step("each zone goes to its PvD (dig UDP, dig +tcp, dnspython UDP/TCP)", async () => {
      for (const tcp of [false, true]) {
        const a = await dig({ server: G, name: "www.home.test", tcp });
        assert.equal(a.status, "NOERROR", a.raw);
        assert.deepEqual(a.answers.map((r) => r.data), ["10.1.0.1"]);
        const b = await dig({ server: G, name: "intra.corp.test", tcp });
        assert.equal(b.status, "NOERROR", b.raw);
        assert.deepEqual(b.answers.map((r) => r.data), ["10.2.0.1"]);
        assert.equal(b.transport, tcp ? "TCP" : "UDP");
      }
      for (const tcp of [false, true]) {
        const six = await dnspythonQuery({ server: G, name: "www.home.test", type: "AAAA", tcp });
        assert.equal(six.rcode, "NOERROR", JSON.stringify(six));
        assert.deepEqual(six.answers.map((r) => r.data), ["fd01::1"]);
        const corp = await dnspythonQuery({ server: G, name: "intra.corp.test", tcp });
        assert.deepEqual(corp.answers.map((r) => r.data), ["10.2.0.1"]);
      }
      assert.equal((await queriesFor(home, "www.home.test")).length >= 1, true);
      assert.equal((await queriesFor(vpn, "intra.corp.test")).length >= 1, true);
    });

    await t.step("a shared name answers per bound listener, no cache crossing", async () => {
      // Home first, so a cache shared across PvDs would hand home's answer to vpn.
      for (let round = 0; round < 2; round++) {
        const viaH = await dig({ server: H, name: "www.shared.test" });
        const viaV = await dig({ server: V, name: "www.shared.test" });
        assert.deepEqual(viaH.answers.map((r) => r.data), ["10.1.0.99"], viaH.raw);
        assert.deepEqual(viaV.answers.map((r) => r.data), ["10.2.0.99"], viaV.raw);
        const pyV = await dnspythonQuery({ server: V, name: "www.shared.test", tcp: round === 1 });
        assert.deepEqual(pyV.answers.map((r) => r.data), ["10.2.0.99"]);
        const pyH = await dnspythonQuery({ server: H, name: "www.shared.test", tcp: round === 0 });
        assert.deepEqual(pyH.answers.map((r) => r.data), ["10.1.0.99"]);
      }
      // The routing listener sends an unclaimed name to the default PvD (home).
      const viaG = await dig({ server: G, name: "www.shared.test" });
      assert.deepEqual(viaG.answers.map((r) => r.data), ["10.1.0.99"]);
      // Each upstream was asked for the shared name once; the rest came from each PvD's cache.
      assert.equal((await queriesFor(home, "www.shared.test")).length, 1);
      assert.equal((await queriesFor(vpn, "www.shared.test")).length, 1);
    });

    await t.step("upstream logs: only own-PvD names, only from the PvD's source", async () => {
      const homeLog = await home.queryLog();
      const vpnLog = await vpn.queryLog();
      assert.ok(homeLog.length > 0 && vpnLog.length > 0);
      for (const e of homeLog) {
        assert.equal(e.from, homeSrc, `home upstream got a query from elsewhere: ${e.line}`);
        assert.ok(
          !/(^|\.)(corp|dead)\.test$/i.test(e.name),
          `corp/dead name reached home: ${e.line}`,
        );
      }
      for (const e of vpnLog) {
        assert.equal(e.from, vpnSrc, `vpn upstream got a query from elsewhere: ${e.line}`);
        assert.ok(
          !/(^|\.)(home|dead)\.test$/i.test(e.name),
          `home/dead name reached vpn: ${e.line}`,
        );
      }
    });

    await t.step("second identical query is a cache hit with a lower TTL", async () => {
      const first = await dig({ server: G, name: "cache.home.test" });
      assert.equal(first.status, "NOERROR", first.raw);
      const ttl1 = first.answers[0]!.ttl;
      assert.ok(ttl1 <= 300 && ttl1 >= 295, `first TTL ${ttl1}`);
      assert.equal((await queriesFor(home, "cache.home.test")).length, 1);
      await sleep(1100);
      const second = await dig({ server: G, name: "cache.home.test" });
      const ttl2 = second.answers[0]!.ttl;
      assert.deepEqual(second.answers.map((r) => r.data), ["10.1.0.2"]);
      assert.ok(ttl2 < ttl1 && ttl2 >= ttl1 - 3, `TTL ${ttl1} then ${ttl2}`);
      // Other clients, transports and letter case hit the same entry.
      const py = await dnspythonQuery({ server: G, name: "cache.home.test", tcp: true });
      assert.ok(py.answers[0]!.ttl <= ttl1);
      const mixed = await dig({ server: G, name: "CaChE.HoMe.TeSt" });
      assert.equal(mixed.question[0]?.name, "CaChE.HoMe.TeSt.", "question case not echoed");
      assert.deepEqual(mixed.answers.map((r) => r.data), ["10.1.0.2"]);
      assert.equal((await queriesFor(home, "cache.home.test")).length, 1, "cache miss upstream");
    });

    await t.step("NXDOMAIN and NODATA are cached negatively (SOA)", async () => {
      const nx1 = await dig({ server: G, name: "nope.home.test" });
      assert.equal(nx1.status, "NXDOMAIN", nx1.raw);
      assert.equal(nx1.authority[0]?.type, "SOA", nx1.raw);
      assert.equal((await queriesFor(home, "nope.home.test")).length, 1);
      const nx2 = await dig({ server: G, name: "nope.home.test", tcp: true });
      assert.equal(nx2.status, "NXDOMAIN");
      const nx3 = await dnspythonQuery({ server: G, name: "nope.home.test" });
      assert.equal(nx3.rcode, "NXDOMAIN");
      assert.equal((await queriesFor(home, "nope.home.test")).length, 1, "NXDOMAIN not cached");

      const nd1 = await dig({ server: G, name: "intra.corp.test", type: "AAAA" });
      assert.equal(nd1.status, "NOERROR");
      assert.equal(nd1.answers.length, 0);
      const nd2 = await dig({ server: G, name: "intra.corp.test", type: "AAAA" });
      assert.equal(nd2.answers.length, 0);
      const aaaa = (await queriesFor(vpn, "intra.corp.test")).filter((e) => e.type === "AAAA");
      assert.equal(aaaa.length, 1, "NODATA not cached");
    });

    await t.step("3 KB TXT: TC over UDP without EDNS, whole over TCP", async () => {
      const udp = await dig({
        server: G,
        name: "big.home.test",
        type: "TXT",
        edns: false,
        extra: ["+ignore"],
      });
      assert.equal(udp.status, "NOERROR", udp.raw);
      assert.ok(udp.flags.includes("tc"), `no TC: ${udp.raw}`);
      assert.ok((udp.msgSize ?? 0) <= 512, `UDP answer of ${udp.msgSize} bytes without EDNS`);
      const edns = await dig({
        server: G,
        name: "big.home.test",
        type: "TXT",
        edns: 1232,
        extra: ["+ignore"],
      });
      assert.ok(edns.flags.includes("tc"), `no TC at 1232: ${edns.raw}`);
      assert.ok((edns.msgSize ?? 0) <= 1232);
      const tcp = await dig({ server: G, name: "big.home.test", type: "TXT", tcp: true });
      assert.equal(tcp.answers.length, 1, tcp.raw);
      assert.equal(txtStrings(tcp.answers[0]!.data).join(""), big);
      const py = await dnspythonQuery({ server: G, name: "big.home.test", type: "TXT", tcp: true });
      assert.equal(py.answers[0]?.strings?.join(""), big);
      // dig's own fallback: UDP, TC, then TCP.
      const auto = await dig({ server: G, name: "big.home.test", type: "TXT", edns: false });
      assert.equal(txtStrings(auto.answers[0]?.data ?? "").join(""), big, auto.raw);
    });

    await t.step("malformed packets get FORMERR or are dropped; service goes on", async () => {
      const garbage = crypto.getRandomValues(new Uint8Array(5));
      const r1 = await sendRawUdp({ server: G, bytes: garbage, timeoutMs: 500 });
      assert.equal(r1, null, "a 5-byte packet has no readable header: drop it");

      const twoQuestions = new Uint8Array(12);
      new DataView(twoQuestions.buffer).setUint16(0, 0xbeef);
      new DataView(twoQuestions.buffer).setUint16(2, 0x0100);
      new DataView(twoQuestions.buffer).setUint16(4, 2);
      for (const send of [sendRawUdp, sendRawTcp]) {
        const r2 = await send({ server: G, bytes: twoQuestions, timeoutMs: 1000 });
        if (r2 !== null) {
          const h = parseHeader(r2);
          assert.equal(h.id, 0xbeef);
          assert.ok(h.qr);
          assert.equal(h.rcode, RCODE_FORMERR, `rcode ${h.rcode}`);
        }
      }
      const ok = await sendRawUdp({ server: G, bytes: buildQuery(0x7777, "www.home.test") });
      assert.ok(ok, "no answer after malformed packets");
      assert.equal(parseHeader(ok).id, 0x7777);
      assert.equal(parseHeader(ok).ancount, 1);
      const d = await dig({ server: G, name: "intra.corp.test", tcp: true });
      assert.deepEqual(d.answers.map((r) => r.data), ["10.2.0.1"]);
    });

    await t.step("a dead PvD answers SERVFAIL and touches no other PvD", async () => {
      const before = [(await home.queryLog()).length, (await vpn.queryLog()).length];
      const started = Date.now();
      const r = await dig({ server: G, name: "www.dead.test", timeSeconds: 4 });
      assert.equal(r.status, "SERVFAIL", r.raw);
      assert.ok(Date.now() - started < 4000, "SERVFAIL took too long");
      const py = await dnspythonQuery({ server: G, name: "other.dead.test", timeoutSeconds: 4 });
      assert.equal(py.rcode, "SERVFAIL");
      const after = [(await home.queryLog()).length, (await vpn.queryLog()).length];
      assert.deepEqual(after, before, "a dead-PvD query reached another PvD's upstream");
      for (const up of [home, vpn]) {
        assert.ok(!(await up.queryLog()).some((e) => /dead\.test$/i.test(e.name)));
      }
      await sleep(100);
      assert.ok(hole.received.length >= 1, "the silent server of the dead PvD was never asked");
      for (const p of hole.received) assert.equal(p.from, deadSrc);
      // The live PvDs still answer.
      const live = await dig({ server: V, name: "www.shared.test" });
      assert.deepEqual(live.answers.map((x) => x.data), ["10.2.0.99"]);
    });
  } finally {
    const status = await pvdns.stop();
    await home.stop();
    await vpn.stop();
    await hole.close();
    if (!status.success && status.signal !== "SIGTERM") {
      console.error(pvdns.output().join("\n"));
    }
  }
});

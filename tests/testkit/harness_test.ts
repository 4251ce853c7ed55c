/**
 * Proves the test helpers against the real tools: two dnsmasq upstreams answering one name
 * differently, dig (UDP, TCP, no EDNS), dnspython, raw packets, query logs, SOA on negative
 * answers, a 3 KB TXT record, and glibc inside a network namespace.
 *
 * @module
 */

import assert from "node:assert/strict";
import { dig, parseDig, txtStrings } from "../../testkit/dig.ts";
import { startDnsmasq } from "../../testkit/dnsmasq.ts";
import { dnspythonQuery, parseHeader, sendRawTcp, sendRawUdp } from "../../testkit/dnspython.ts";
import { loopbackAddress } from "../../testkit/loopback.ts";
import { bigTxt, buildQuery } from "../../testkit/wire.ts";
import { createNetns, writeNetnsResolvConf } from "../../testkit/netns.ts";

Deno.test("loopbackAddress gives distinct addresses outside 127.0.x.x", () => {
  const seen = new Set<string>();
  for (let i = 0; i < 20; i++) {
    const a = loopbackAddress();
    assert.match(a, /^127\.\d+\.\d+\.\d+$/);
    assert.ok(!a.startsWith("127.0."), a);
    assert.ok(!seen.has(a), `duplicate ${a}`);
    seen.add(a);
  }
});

Deno.test("parseDig reads header, flags, sections and TXT strings", () => {
  const r = parseDig(
    [
      ";; ->>HEADER<<- opcode: QUERY, status: NXDOMAIN, id: 4242",
      ";; flags: qr aa rd; QUERY: 1, ANSWER: 1, AUTHORITY: 1, ADDITIONAL: 1",
      "",
      ";; OPT PSEUDOSECTION:",
      "; EDNS: version: 0, flags:; udp: 1232",
      ";; QUESTION SECTION:",
      ";x.test.\t\t\tIN\tTXT",
      "",
      ";; ANSWER SECTION:",
      'x.test.\t\t300\tIN\tTXT\t"a b" "c\\"d"',
      "",
      ";; AUTHORITY SECTION:",
      "test.\t\t60\tIN\tSOA\tns.test. h.test. 1 2 3 4 60",
      "",
      ";; SERVER: 127.1.2.3#53(127.1.2.3) (TCP)",
      ";; MSG SIZE  rcvd: 99",
    ].join("\n"),
  );
  assert.equal(r.status, "NXDOMAIN");
  assert.equal(r.id, 4242);
  assert.deepEqual(r.flags, ["qr", "aa", "rd"]);
  assert.equal(r.answers.length, 1);
  assert.deepEqual(txtStrings(r.answers[0]!.data), ["a b", 'c"d']);
  assert.equal(r.authority[0]?.type, "SOA");
  assert.equal(r.ednsUdpSize, 1232);
  assert.equal(r.transport, "TCP");
  assert.equal(r.msgSize, 99);
  assert.deepEqual(r.question, [{ name: "x.test.", class: "IN", type: "TXT" }]);
});

Deno.test("dnsmasq upstreams: split horizon, logs, SOA negatives, 3 KB TXT", async (t) => {
  const homeAddr = loopbackAddress();
  const vpnAddr = loopbackAddress();
  const clientAddr = loopbackAddress({ port: 0 });
  const big = bigTxt("h");
  const home = await startDnsmasq({
    address: homeAddr,
    zones: ["home.test", "shared.test"],
    ttl: 120,
    records: [
      { name: "www.home.test", type: "A", value: "10.1.0.1" },
      { name: "www.home.test", type: "AAAA", value: "fd01::1" },
      { name: "www.shared.test", type: "A", value: "10.1.0.99" },
      { name: "big.home.test", type: "TXT", value: big },
    ],
  });
  const vpn = await startDnsmasq({
    address: vpnAddr,
    zones: ["corp.test", "shared.test"],
    records: [
      { name: "intra.corp.test", type: "A", value: "10.2.0.1" },
      { name: "www.shared.test", type: "A", value: "10.2.0.99" },
    ],
  });
  try {
    await t.step("the shared name answers differently on each (dig UDP and TCP)", async () => {
      for (const tcp of [false, true]) {
        const a = await dig({ server: homeAddr, name: "www.shared.test", tcp });
        const b = await dig({ server: vpnAddr, name: "www.shared.test", tcp });
        assert.equal(a.status, "NOERROR", a.raw);
        assert.equal(a.transport, tcp ? "TCP" : "UDP");
        assert.deepEqual(a.answers.map((r) => r.data), ["10.1.0.99"]);
        assert.deepEqual(b.answers.map((r) => r.data), ["10.2.0.99"]);
        assert.ok(a.flags.includes("aa"), a.raw);
        assert.equal(a.answers[0]!.ttl, 120);
        assert.equal(b.answers[0]!.ttl, 300);
      }
    });

    await t.step("dnspython over UDP and TCP", async () => {
      for (const tcp of [false, true]) {
        const r = await dnspythonQuery({ server: vpnAddr, name: "intra.corp.test", tcp });
        assert.equal(r.rcode, "NOERROR", JSON.stringify(r));
        assert.deepEqual(r.answers.map((x) => x.data), ["10.2.0.1"]);
        const six = await dnspythonQuery({ server: homeAddr, name: "www.home.test", type: "AAAA" });
        assert.deepEqual(six.answers.map((x) => x.data), ["fd01::1"]);
      }
    });

    await t.step("query log: names, types and client source address", async () => {
      await dig({ server: homeAddr, name: "www.home.test", source: clientAddr });
      const q = await home.waitForQuery((e) => e.from === clientAddr);
      assert.equal(q.kind, "auth");
      assert.equal(q.type, "A");
      assert.equal(q.name, "www.home.test");
      const vpnLog = await vpn.queryLog();
      assert.ok(vpnLog.length >= 4, JSON.stringify(vpnLog));
      assert.ok(!vpnLog.some((e) => e.name.endsWith("home.test")), "home query reached vpn");
    });

    await t.step("NXDOMAIN and NODATA carry the zone SOA", async () => {
      const nx = await dig({ server: homeAddr, name: "nope.home.test" });
      assert.equal(nx.status, "NXDOMAIN");
      assert.equal(nx.authority[0]?.type, "SOA", nx.raw);
      assert.equal(nx.authority[0]?.ttl, 120);
      const nodata = await dnspythonQuery({
        server: vpnAddr,
        name: "intra.corp.test",
        type: "AAAA",
      });
      assert.equal(nodata.rcode, "NOERROR");
      assert.equal(nodata.answers.length, 0);
      assert.equal(nodata.authority[0]?.type, "SOA");
      const out = await dig({ server: homeAddr, name: "example.com" });
      assert.equal(out.status, "REFUSED");
    });

    await t.step("3 KB TXT: TC over UDP without EDNS, whole over TCP", async () => {
      const udp = await dig({
        server: homeAddr,
        name: "big.home.test",
        type: "TXT",
        edns: false,
        extra: ["+ignore"],
      });
      assert.ok(udp.flags.includes("tc"), udp.raw);
      const tcp = await dig({ server: homeAddr, name: "big.home.test", type: "TXT", tcp: true });
      assert.equal(tcp.answers.length, 1);
      assert.equal(txtStrings(tcp.answers[0]!.data).join(""), big);
      assert.ok((tcp.msgSize ?? 0) > 3072);
      const py = await dnspythonQuery({
        server: homeAddr,
        name: "big.home.test",
        type: "TXT",
        tcp: true,
      });
      assert.equal(py.answers[0]?.strings?.join(""), big);
    });

    await t.step("raw UDP and TCP packets", async () => {
      const reply = await sendRawUdp({
        server: vpnAddr,
        bytes: buildQuery(0x1234, "intra.corp.test"),
      });
      assert.ok(reply, "no UDP reply");
      const h = parseHeader(reply);
      assert.equal(h.id, 0x1234);
      assert.ok(h.qr);
      assert.equal(h.ancount, 1);
      const tcpReply = await sendRawTcp({
        server: vpnAddr,
        bytes: buildQuery(0x4321, "intra.corp.test"),
      });
      assert.ok(tcpReply, "no TCP reply");
      assert.equal(parseHeader(tcpReply).id, 0x4321);
      const nothing = await sendRawUdp({
        server: loopbackAddress(),
        bytes: buildQuery(1, "x.test"),
        timeoutMs: 300,
      });
      assert.equal(nothing, null);
    });
  } finally {
    await home.stop();
    await vpn.stop();
  }
  // stop() took the authoritative address off lo again.
  const still = await dig({ server: homeAddr, name: "www.home.test", timeSeconds: 1 });
  assert.equal(still.status, "TIMEOUT");
});

Deno.test("netns: glibc resolves through a dnsmasq inside the namespace", async () => {
  const ns = await createNetns({ dualStack: true });
  try {
    const addr = loopbackAddress({ port: 0 });
    const dns = await startDnsmasq({
      address: addr,
      netns: ns.name,
      zones: ["ns.test"],
      records: [
        { name: "both.ns.test", type: "A", value: "10.3.0.1" },
        { name: "both.ns.test", type: "AAAA", value: "fd03::1" },
      ],
    });
    try {
      await writeNetnsResolvConf(ns.name, `nameserver ${addr}\noptions timeout:2 attempts:1\n`);
      const r = await ns.exec(["getent", "ahosts", "both.ns.test"], { timeoutMs: 10_000 });
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /^10\.3\.0\.1\s/m);
      assert.match(r.stdout, /^fd03::1\s/m);
      const log = await dns.queryLog();
      assert.deepEqual(new Set(log.map((e) => e.type)), new Set(["A", "AAAA"]));
      // The host namespace has no such listener.
      const outside = await dig({ server: addr, name: "both.ns.test", timeSeconds: 1 });
      assert.equal(outside.status, "TIMEOUT");
    } finally {
      await dns.stop();
    }
  } finally {
    await ns.delete();
  }
  const gone = await Deno.stat(`/etc/netns/${ns.name}`).then(() => true, () => false);
  assert.equal(gone, false);
});

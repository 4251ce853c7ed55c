import assert from "node:assert/strict";
import * as packet from "dns-packet";
import { Buffer } from "node:buffer";
import {
  type AnswerTrust,
  privateIPv4,
  privateIPv6,
  rebindFilter,
} from "../../src/upstream/answer_trust.ts";
import { indexResponse } from "../../src/dns/response.ts";

const CACHE = { minTtl: 0, maxTtl: 86400, negativeMaxTtl: 3600, servfailTtl: 2 };

const enc = (p: packet.Packet) => new Uint8Array(packet.encode(p));
const dec = (w: Uint8Array) => packet.decode(Buffer.from(w));

function answer(name: string, answers: packet.Answer[], flags = packet.RECURSION_AVAILABLE) {
  return enc({
    type: "response",
    id: 7,
    flags,
    questions: [{ name, type: "A", class: "IN" }],
    answers,
  });
}

Deno.test("AD: cleared unless the PvD trusts its resolver", () => {
  const wire = answer(
    "sshfp.example.org",
    [{ type: "A", name: "sshfp.example.org", ttl: 60, data: "192.0.2.7" }],
    packet.RECURSION_AVAILABLE | packet.AUTHENTIC_DATA,
  );
  const ad = (w: Uint8Array) => ((dec(w).flags ?? 0) & packet.AUTHENTIC_DATA) !== 0;
  assert.equal(ad(indexResponse(wire, 0, CACHE).wire), false, "the default trusts no AD");
  assert.equal(ad(indexResponse(wire, 0, CACHE, { trustAd: false }).wire), false);
  assert.equal(ad(indexResponse(wire, 0, CACHE, { trustAd: true }).wire), true);
  assert.equal(ad(wire), true, "the upstream's bytes are not changed");
});

Deno.test("rebinding: private addresses of public names are dropped, own zones keep theirs", async (t) => {
  const trust: AnswerTrust = {
    trustAd: false,
    blockRebind: true,
    ownZones: ["corp.example.", "home.arpa."],
  };
  const index = (name: string, answers: packet.Answer[], on = trust) => {
    let dropped = 0;
    const filter = rebindFilter(on, `${name}.`);
    const stored = indexResponse(answer(name, answers), 0, CACHE, {
      ...(filter ? { keepRecord: filter } : {}),
      onDropped: (n) => dropped += n,
    });
    return { stored, dropped, out: dec(stored.wire) };
  };

  await t.step("a public name pointing into the LAN becomes NODATA", () => {
    const r = index("evil.example.com", [
      { type: "A", name: "evil.example.com", ttl: 60, data: "192.168.1.1" },
    ]);
    assert.equal(r.dropped, 1);
    assert.equal(r.out.answers?.length ?? 0, 0);
    assert.equal(r.stored.kind, "negative");
  });

  await t.step("public addresses stay; only the private ones go", () => {
    const r = index("mixed.example.com", [
      { type: "A", name: "mixed.example.com", ttl: 60, data: "10.0.0.5" },
      { type: "A", name: "mixed.example.com", ttl: 60, data: "198.51.100.9" },
      { type: "A", name: "mixed.example.com", ttl: 60, data: "127.0.0.1" },
    ]);
    assert.equal(r.dropped, 2);
    assert.deepEqual(r.out.answers?.map((a) => (a as packet.StringAnswer).data), ["198.51.100.9"]);
    assert.equal(r.stored.kind, "positive");
  });

  await t.step("a CNAME from a public name into an own zone is still blocked", () => {
    const r = index("www.example.com", [
      { type: "CNAME", name: "www.example.com", ttl: 60, data: "host.corp.example" },
      { type: "A", name: "host.corp.example", ttl: 60, data: "10.0.0.5" },
    ]);
    assert.equal(r.dropped, 1);
    assert.deepEqual(r.out.answers?.map((a) => a.type), ["CNAME"]);
  });

  await t.step("names inside the PvD's own zones keep private addresses", () => {
    const r = index("host.corp.example", [
      { type: "A", name: "host.corp.example", ttl: 60, data: "10.0.0.5" },
    ]);
    assert.equal(r.dropped, 0);
    assert.deepEqual(r.out.answers?.map((a) => (a as packet.StringAnswer).data), ["10.0.0.5"]);
  });

  await t.step("off: nothing is dropped", () => {
    const r = index("evil.example.com", [
      { type: "A", name: "evil.example.com", ttl: 60, data: "192.168.1.1" },
    ], { ...trust, blockRebind: false });
    assert.equal(r.dropped, 0);
    assert.equal(r.out.answers?.length, 1);
  });
});

Deno.test("rebinding: the private ranges", () => {
  const v4 = (text: string) => privateIPv4(new Uint8Array(text.split(".").map(Number)), 0);
  for (const a of ["10.1.2.3", "127.0.0.1", "169.254.1.1", "172.16.0.1", "172.31.255.255"]) {
    assert.ok(v4(a), a);
  }
  for (const a of ["192.168.0.1", "100.64.0.1", "100.127.255.255", "0.0.0.0"]) assert.ok(v4(a), a);
  for (const a of ["172.32.0.1", "192.0.2.1", "100.128.0.1", "8.8.8.8", "169.253.1.1"]) {
    assert.ok(!v4(a), a);
  }
  const v6 = (text: string) => {
    const bytes = new Uint8Array(16);
    const wire = packet.encode({
      type: "response",
      answers: [{ type: "AAAA", name: "x", data: text }],
    });
    bytes.set(wire.subarray(wire.length - 16));
    return privateIPv6(bytes, 0);
  };
  for (const a of ["::1", "::", "fe80::1", "fd00::5", "fc12::1", "::ffff:192.168.1.1"]) {
    assert.ok(v6(a), a);
  }
  for (const a of ["2001:db8::1", "::ffff:198.51.100.1", "64:ff9b::a00:1", "ff02::1"]) {
    assert.ok(!v6(a), a);
  }
});

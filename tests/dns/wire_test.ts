import assert from "node:assert/strict";
import * as packet from "dns-packet";
import { Buffer } from "node:buffer";
import { MAX_UDP_REPLY, parseQuery, Rcode } from "../../src/dns/wire.ts";
import { answersQuery, buildUpstreamQuery, encodeName } from "../../src/dns/query.ts";

function encode(p: packet.Packet): Uint8Array {
  return new Uint8Array(packet.encode(p));
}

function decode(b: Uint8Array): packet.Packet {
  return packet.decode(Buffer.from(b));
}

const q = (name: string, type: packet.RecordType = "A", extra: Partial<packet.Packet> = {}) =>
  encode({
    type: "query",
    id: 4242,
    flags: packet.RECURSION_DESIRED,
    questions: [{ name, type, class: "IN" }],
    ...extra,
  });

Deno.test("parseQuery() reads the question, lower-cases the name and keeps the client's bytes", () => {
  const raw = q("WwW.Example.ORG");
  const r = parseQuery(raw);
  assert.equal(r.kind, "query");
  if (r.kind !== "query") return;
  assert.equal(r.query.qname, "www.example.org.");
  assert.equal(r.query.qtype, 1);
  assert.equal(r.query.id, 4242);
  assert.equal(r.query.edns, undefined);
  assert.equal(new TextDecoder().decode(raw.subarray(13, 16)), "WwW");
});

Deno.test("parseQuery() reads EDNS: buffer size (512 at least), version and DO", () => {
  const raw = q("example.org", "AAAA", {
    additionals: [
      { type: "OPT", name: ".", udpPayloadSize: 1200, flags: packet.DNSSEC_OK } as packet.Answer,
    ],
  });
  const r = parseQuery(raw);
  assert.equal(r.kind, "query");
  if (r.kind !== "query") return;
  assert.deepEqual(r.query.edns, { udpSize: 1200, version: 0, do: true });
  const small = parseQuery(
    q("example.org", "A", {
      additionals: [{ type: "OPT", name: ".", udpPayloadSize: 100 } as packet.Answer],
    }),
  );
  assert.equal(small.kind === "query" && small.query.edns?.udpSize, 512);
});

Deno.test("parseQuery() caps the EDNS buffer size at the largest UDP datagram", () => {
  // Regression (listener fuzzing, issue 8): a client advertising 65535 was sent replies of up to
  // 65,535 bytes over UDP; above 65,507 the send failed and the client got nothing at all, where
  // TC would have sent it to TCP.
  const r = parseQuery(q("example.org", "TXT", {
    additionals: [{ type: "OPT", name: ".", udpPayloadSize: 65535 } as packet.Answer],
  }));
  assert.equal(r.kind === "query" && r.query.edns?.udpSize, MAX_UDP_REPLY);
  assert.equal(MAX_UDP_REPLY, 65_535 - 20 - 8, "IPv4 and UDP headers off the largest IP packet");
});

Deno.test("parseQuery() validation table", async (t) => {
  const header = (flags: number, qd: number) => {
    const b = new Uint8Array(12);
    new DataView(b.buffer).setUint16(0, 0xbeef);
    new DataView(b.buffer).setUint16(2, flags);
    new DataView(b.buffer).setUint16(4, qd);
    return b;
  };
  const withQuestion = (h: Uint8Array, name = "example.org.", type = 1, cls = 1) => {
    const n = encodeName(name);
    const out = new Uint8Array(h.length + n.length + 4);
    out.set(h);
    out.set(n, 12);
    new DataView(out.buffer).setUint16(12 + n.length, type);
    new DataView(out.buffer).setUint16(14 + n.length, cls);
    return out;
  };
  const cases: { name: string; raw: Uint8Array; expect: "drop" | number }[] = [
    { name: "5 bytes", raw: new Uint8Array([1, 2, 3, 4, 5]), expect: "drop" },
    { name: "a response (QR=1)", raw: withQuestion(header(0x8000, 1)), expect: "drop" },
    { name: "no question", raw: header(0x0100, 0), expect: Rcode.FORMERR },
    {
      name: "two questions announced",
      raw: withQuestion(header(0x0100, 2)),
      expect: Rcode.FORMERR,
    },
    { name: "opcode NOTIFY", raw: withQuestion(header(4 << 11, 1)), expect: Rcode.NOTIMP },
    {
      name: "class CH",
      raw: withQuestion(header(0x0100, 1), "version.bind.", 16, 3),
      expect: Rcode.REFUSED,
    },
    { name: "AXFR", raw: withQuestion(header(0, 1), "example.org.", 252), expect: Rcode.REFUSED },
    {
      name: "truncated question",
      raw: withQuestion(header(0, 1)).subarray(0, 20),
      expect: Rcode.FORMERR,
    },
    {
      name: "pointer in question",
      raw: new Uint8Array([...header(0, 1), 0xc0, 0x0c, 0, 1, 0, 1]),
      expect: Rcode.FORMERR,
    },
    {
      name: "EDNS version 1",
      raw: q("example.org", "A", {
        additionals: [{ type: "OPT", name: ".", udpPayloadSize: 1232 } as packet.Answer],
      })
        .map((b, i, a) => (i === a.length - 5 ? 1 : b)),
      expect: Rcode.BADVERS,
    },
    {
      name: "two OPT records",
      raw: q("example.org", "A", {
        additionals: [
          { type: "OPT", name: "." } as packet.Answer,
          { type: "OPT", name: "." } as packet.Answer,
        ],
      }),
      expect: Rcode.FORMERR,
    },
  ];
  for (const c of cases) {
    await t.step(c.name, () => {
      const r = parseQuery(c.raw);
      if (c.expect === "drop") return assert.equal(r.kind, "drop");
      assert.equal(r.kind, "error");
      if (r.kind !== "error") return;
      assert.equal(r.rcode, c.expect);
      const reply = decode(r.reply);
      assert.equal(
        reply.id,
        new DataView(c.raw.buffer, c.raw.byteOffset).getUint16(0),
        "ID echoed",
      );
      assert.equal(reply.type, "response");
      if (c.expect === Rcode.BADVERS) {
        const opt = reply.additionals?.find((a) => a.type === "OPT") as
          | { extendedRcode?: number }
          | undefined;
        assert.ok(opt, "BADVERS reply carries an OPT record");
        assert.equal(opt.extendedRcode, 1);
      } else {
        assert.equal(r.reply[3]! & 0xf, c.expect);
      }
      if (c.name === "class CH") assert.equal(reply.questions?.[0]?.name, "version.bind");
    });
  }
});

Deno.test("buildUpstreamQuery() makes a query dns-packet reads back, and answersQuery() matches it", () => {
  const wire = buildUpstreamQuery({
    id: 77,
    qname: "a.example.org.",
    qtype: 28,
    qclass: 1,
    do: true,
    cd: true,
  });
  const p = decode(wire);
  assert.equal(p.id, 77);
  assert.deepEqual(p.questions, [{ name: "a.example.org", type: "AAAA", class: "IN" }]);
  assert.ok((p.flags ?? 0) & packet.CHECKING_DISABLED);
  const opt = p.additionals?.[0] as { udpPayloadSize: number; flags: number };
  assert.equal(opt.udpPayloadSize, 1232);
  assert.ok(opt.flags & packet.DNSSEC_OK);
  const answer = encode({
    type: "response",
    id: 77,
    questions: [{ name: "A.EXAMPLE.org", type: "AAAA", class: "IN" }],
  });
  assert.ok(answersQuery(wire, answer), "case differences are fine");
  const wrongId = encode({
    type: "response",
    id: 78,
    questions: [{ name: "a.example.org", type: "AAAA", class: "IN" }],
  });
  assert.ok(!answersQuery(wire, wrongId));
  const wrongType = encode({
    type: "response",
    id: 77,
    questions: [{ name: "a.example.org", type: "A", class: "IN" }],
  });
  assert.ok(!answersQuery(wire, wrongType));
  const notResponse = encode({
    type: "query",
    id: 77,
    questions: [{ name: "a.example.org", type: "AAAA", class: "IN" }],
  });
  assert.ok(!answersQuery(wire, notResponse));
});

Deno.test("encodeName() handles the root and escaped bytes", () => {
  assert.deepEqual([...encodeName(".")], [0]);
  assert.deepEqual([...encodeName("a\\046b.c.")], [3, 97, 46, 98, 1, 99, 0]);
});

Deno.test("parseQuery(): NOTIMP for another opcode carries an OPT when the query had one (RFC 6891 §7)", () => {
  const withOpt = q("example.org", "A", {
    additionals: [{ type: "OPT", name: ".", udpPayloadSize: 1232, flags: 0x8000 } as packet.Answer],
  });
  const status = (raw: Uint8Array) => raw.map((b, i) => (i === 2 ? (b & 0x87) | (2 << 3) : b)); // opcode STATUS
  for (
    const [what, raw, opt] of [
      ["with an OPT", status(withOpt), true],
      ["without", status(q("example.org", "A")), false],
      [
        "with two OPTs (malformed)",
        status(q("example.org", "A", {
          additionals: [{ type: "OPT", name: "." }, { type: "OPT", name: "." }] as packet.Answer[],
        })),
        false,
      ],
    ] as const
  ) {
    const r = parseQuery(raw);
    assert.equal(r.kind, "error", what);
    if (r.kind !== "error") continue;
    assert.equal(r.rcode, Rcode.NOTIMP, what);
    const reply = packet.decode(Buffer.from(r.reply));
    const opts = (reply.additionals ?? []).filter((a) => a.type === "OPT");
    assert.equal(opts.length, opt ? 1 : 0, what);
    if (opt) assert.equal((opts[0] as { flags?: number }).flags! & 0x8000, 0x8000, "DO echoed");
    assert.equal(reply.questions?.[0]?.name, "example.org", what);
  }
});

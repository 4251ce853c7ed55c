/**
 * EDNS(0) padding (RFC 7830, RFC 8467): every query pvdns sends over DoT or DoH is padded to a
 * multiple of 128 octets, as the bytes a test DoT server and a test DoH server received show;
 * a Do53 query carries no padding, as a capture of the wire shows.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import * as packet from "dns-packet";
import { LeakGuard } from "../../src/policy/leak_guard.ts";
import { parseServer } from "../../src/config/schema.ts";
import { buildUpstreamQuery } from "../../src/dns/query.ts";
import { HttpsTransport } from "../../src/transports/https.ts";
import { padMessage, QUERY_BLOCK, RESPONSE_BLOCK } from "../../src/dns/padding.ts";
import { TlsTransport } from "../../src/transports/tls.ts";
import type { Transport } from "../../src/transports/transport.ts";
import { UdpTransport } from "../../src/transports/udp.ts";
import { startCapture } from "../../testkit/capture.ts";
import { answerA, startStreamServer } from "../../testkit/fake_servers.ts";
import { loopbackAddress } from "../../testkit/loopback.ts";
import { makeTestPki } from "../../testkit/test_pki.ts";

/** Names of 1 to 200 octets: every remainder modulo 128 comes up. */
const NAMES = Array.from(
  { length: 40 },
  (_, i) => `${"a".repeat(1 + (i * 5) % 60)}.${"b".repeat(i + 1)}.test.`,
);

const query = (id: number, qname: string) =>
  buildUpstreamQuery({ id, qname, qtype: 1, qclass: 1, do: false, cd: false });

/** The Padding option of `message`'s OPT record (its length), or undefined. */
function paddingOf(message: Uint8Array): number | undefined {
  const opt = packet.decode(Buffer.from(message)).additionals?.find((a) => a.type === "OPT") as
    | packet.OptAnswer
    | undefined;
  const option = opt?.options.find((o) => o.code === 12);
  return option ? (option as { length?: number; data?: Buffer }).data?.length ?? 0 : undefined;
}

Deno.test("padMessage(): blocks of 128 for queries and 468 for answers; only with an OPT record", () => {
  for (const [i, name] of NAMES.entries()) {
    const q = query(i, name);
    const padded = padMessage(q, QUERY_BLOCK);
    assert.equal(padded.length % QUERY_BLOCK, 0, `${name}: ${padded.length}`);
    assert.ok(padded.length >= q.length + 4 && padded.length < q.length + 4 + QUERY_BLOCK);
    assert.equal(paddingOf(padded), padded.length - q.length - 4);
    const decoded = packet.decode(Buffer.from(padded));
    assert.equal(decoded.questions?.[0]?.name, name.slice(0, -1), "still the same question");
    assert.equal(padMessage(q, RESPONSE_BLOCK).length % RESPONSE_BLOCK, 0);
  }
  const noEdns = new Uint8Array(packet.encode({
    type: "query",
    id: 1,
    questions: [{ name: "x.test", type: "A", class: "IN" }],
  }));
  assert.equal(padMessage(noEdns, QUERY_BLOCK), noEdns, "no OPT record: unchanged");
});

Deno.test("padding on the wire: DoT and DoH queries padded to 128, Do53 not", async (t) => {
  const pki = await makeTestPki();
  const [dotAddress, dohAddress, udpAddress] = [
    loopbackAddress(),
    loopbackAddress(),
    loopbackAddress(),
  ];
  const source = loopbackAddress({ port: 0 });
  const seen: Uint8Array[] = [];
  const dot = startStreamServer({
    address: dotAddress,
    port: 853,
    tls: { cert: pki.good.cert, key: pki.good.key },
    answer: (q) => {
      seen.push(q.slice());
      return answerA(q);
    },
  });
  const doh = Deno.serve({
    hostname: dohAddress,
    port: 443,
    cert: pki.good.cert,
    key: pki.good.key,
    onListen: () => {},
  }, async (req) => {
    const body = new Uint8Array(await req.arrayBuffer());
    seen.push(body);
    return new Response(answerA(body) as Uint8Array<ArrayBuffer>, {
      headers: { "content-type": "application/dns-message" },
    });
  });
  const udp = Deno.listenDatagram({ hostname: udpAddress, port: 53, transport: "udp" });
  const udpLoop = (async () => {
    try {
      for (;;) {
        const [data, from] = await udp.receive();
        await udp.send(answerA(data), from);
      }
    } catch { /* closed */ }
  })();
  const servers = [
    parseServer(`tls://${dotAddress}#${pki.authName}`),
    parseServer(`https://${dohAddress}/dns-query#${pki.authName}`),
    parseServer(udpAddress),
  ];
  const guard = new LeakGuard([{ id: "p", sourceAddresses: [source], servers }]);
  const base = { pvd: "p", source, guard };
  const transports: Transport[] = [
    new TlsTransport({ ...base, server: servers[0]!, ca: [pki.caPem] }),
    new HttpsTransport({ ...base, server: servers[1]!, ca: [pki.caPem] }),
  ];
  const udpTransport = new UdpTransport({ ...base, server: servers[2]! });
  try {
    for (const [k, transport] of transports.entries()) {
      await t.step(`${transport.protocol}: every query padded to a multiple of 128`, async () => {
        seen.length = 0;
        for (const [i, name] of NAMES.entries()) {
          const answer = await transport.exchange(query(1000 * k + i, name), {
            signal: AbortSignal.timeout(3000),
          });
          assert.equal(answer[0]! << 8 | answer[1]!, 1000 * k + i, "the answer to this query");
        }
        assert.equal(seen.length, NAMES.length);
        for (const bytes of seen) {
          assert.equal(bytes.length % QUERY_BLOCK, 0, `a ${bytes.length}-octet query`);
          assert.ok(paddingOf(bytes) !== undefined, "the Padding option is there");
        }
      });
    }

    await t.step("udp: the captured Do53 queries carry no padding", async () => {
      const capture = await startCapture({
        interface: "lo",
        filter: `udp and dst host ${udpAddress} and dst port 53`,
      });
      try {
        for (const [i, name] of NAMES.entries()) {
          await udpTransport.exchange(query(i, name), { signal: AbortSignal.timeout(3000) });
        }
        let packets = await capture.packets();
        for (let i = 0; i < 50 && packets.length < NAMES.length; i++) {
          await new Promise((r) => setTimeout(r, 50));
          packets = await capture.packets();
        }
        assert.equal(packets.length, NAMES.length, "every query was captured");
        for (const [i, p] of packets.entries()) {
          assert.equal(paddingOf(p.payload), undefined, "no Padding option in clear");
          assert.equal(p.payload.length, query(i, NAMES[i]!).length, "the unpadded length");
        }
      } finally {
        await capture.stop();
      }
    });
  } finally {
    for (const transport of [...transports, udpTransport]) await transport.close();
    udp.close();
    await udpLoop;
    await doh.shutdown();
    await dot.close();
    await pki.remove();
  }
});

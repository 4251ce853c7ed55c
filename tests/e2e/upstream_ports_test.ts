/**
 * Issue 13, on a real link: the upstream (dnsmasq) lives in a network namespace behind a veth
 * pair, pvdns's side of the link is in the test's own namespace, and tcpdump on that end shows
 * what really went out.
 *
 * ```
 *  test process: UdpTransport / createStub ── src H ══ veth ══ U: dnsmasq (ports.test)  [netns]
 *                                                 tcpdump here
 * ```
 *
 * - 2,000 queries at up to 32 at once, with sockets connected through FFI and without: at least
 *   99 % of them leave from a port no other of them used (RFC 5452 §9.2);
 * - `upstream.caseRandomisation`: the names on the wire are in mixed case, dnsmasq keeps it (no
 *   query is asked twice), and every client gets its own case back, from the cache too.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import * as packet from "dns-packet";
import { LeakGuard } from "../../src/policy/leak_guard.ts";
import { validateConfig } from "../../src/config/parse.ts";
import { parseServer } from "../../src/config/schema.ts";
import { createStub } from "../../src/service/stub.ts";
import { buildUpstreamQuery } from "../../src/dns/query.ts";
import { UdpTransport } from "../../src/transports/udp.ts";
import { type CapturedPacket, startCapture } from "../../testkit/capture.ts";
import { startDnsmasq } from "../../testkit/dnsmasq.ts";
import { loopbackAddress } from "../../testkit/loopback.ts";
import { createNetns, createVethPair } from "../../testkit/netns.ts";
import { buildQuery } from "../../testkit/wire.ts";

const QUERIES = 2000;
const AT_ONCE = 32;

/** A /30 of 198.19.0.0/16 (benchmarking range) of this process's own: H and U. */
function linkAddresses(): { host: string; upstream: string } {
  const a = (Deno.pid >> 6) & 0xff, b = (Deno.pid & 0x3f) << 2;
  return { host: `198.19.${a}.${b + 1}`, upstream: `198.19.${a}.${b + 2}` };
}

/** The question name of a DNS message as it was on the wire (case kept, no trailing dot). */
function wireName(payload: Uint8Array): string {
  return packet.decode(Buffer.from(payload)).questions?.[0]?.name ?? "";
}

async function waitFor<T>(read: () => Promise<T>, done: (v: T) => boolean): Promise<T> {
  let v = await read();
  for (const end = Date.now() + 5000; !done(v) && Date.now() < end; v = await read()) {
    await new Promise((r) => setTimeout(r, 50));
  }
  return v;
}

/** Asks `listen:53` over UDP from a socket of its own; the reply. */
async function ask(listen: string, id: number, name: string): Promise<packet.Packet> {
  const sock = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  try {
    await sock.send(buildQuery(id, name), { transport: "udp", hostname: listen, port: 53 });
    const timer = setTimeout(() => sock.close(), 3000);
    const [data] = await sock.receive();
    clearTimeout(timer);
    return packet.decode(Buffer.from(data));
  } finally {
    try {
      sock.close();
    } catch { /* closed by the timer */ }
  }
}

Deno.test("e2e: a fresh source port for every upstream UDP query; 0x20 on the wire", async (t) => {
  const { host, upstream } = linkAddresses();
  const ns = await createNetns();
  const link = await createVethPair(
    { addresses: [`${host}/30`] },
    { netns: ns.name, addresses: [`${upstream}/30`] },
  );
  const dnsmasq = await startDnsmasq({
    address: upstream,
    netns: ns.name,
    zones: ["ports.test"],
    records: [{ name: "www.ports.test", type: "A", value: "192.0.2.80" }],
    logQueries: false,
  });
  const server = parseServer(upstream);
  const guard = new LeakGuard([{ id: "ports", sourceAddresses: [host], servers: [server] }]);
  const filter = `udp and src host ${host} and dst host ${upstream} and dst port 53`;
  try {
    for (const connect of [true, false]) {
      await t.step(
        `${QUERIES} queries, ${
          connect ? "connected" : "unconnected"
        }: ≥ 99 % distinct source ports`,
        async () => {
          const capture = await startCapture({ interface: link.a, filter });
          const transport = new UdpTransport({
            pvd: "ports",
            server,
            source: host,
            guard,
            connect,
          });
          let packets: CapturedPacket[] = [];
          try {
            assert.equal(transport.connected, connect);
            let next = 0, answered = 0;
            const deadline = Date.now() + 60_000;
            const worker = async () => {
              while (next < QUERIES && Date.now() < deadline) {
                const i = next++;
                const q = buildUpstreamQuery({
                  id: (i * 7919) & 0xffff,
                  qname: `p${i}.${connect ? "c" : "u"}.ports.test.`,
                  qtype: 1,
                  qclass: 1,
                  do: false,
                  cd: false,
                });
                await transport.exchange(q, { signal: AbortSignal.timeout(3000) });
                answered++;
              }
            };
            await Promise.all(Array.from({ length: AT_ONCE }, worker));
            assert.equal(answered, QUERIES);
            packets = await waitFor(() => capture.packets(), (p) => p.length >= QUERIES);
          } finally {
            await transport.close();
            await capture.stop();
          }
          assert.equal(packets.length, QUERIES, "every query was seen on the link");
          const ports = new Set(packets.map((p) => p.sport));
          assert.ok(
            ports.size >= 0.99 * QUERIES,
            `${ports.size} distinct source ports for ${QUERIES} queries`,
          );
        },
      );
    }

    await t.step(
      "0x20 through the stub: mixed case on the wire, the client's own in replies",
      async () => {
        const listen = loopbackAddress();
        const stub = await createStub(
          validateConfig({
            listen: [`${listen}:53`],
            pvds: [{ id: "ports", sourceAddresses: [host], servers: [upstream], default: true }],
            upstream: { timeoutMs: 1000, deadlineMs: 2000, caseRandomisation: true },
          }),
          { log: () => {} },
        );
        const capture = await startCapture({ interface: link.a, filter });
        try {
          for (
            const [i, name] of ["WwW.PoRtS.tEsT", "www.ports.test", "WWW.PORTS.TEST"].entries()
          ) {
            const reply = await ask(listen, 100 + i, name);
            assert.equal((reply.flags ?? 0) & 0xf, 0, "NOERROR");
            assert.equal(reply.questions?.[0]?.name, name, "the question as the client wrote it");
            assert.deepEqual(
              reply.answers?.map((a) => [a.name, a.type === "A" ? a.data : a.type]),
              [[name, "192.0.2.80"]],
            );
          }
          for (let i = 0; i < 10; i++) {
            const reply = await ask(listen, 200 + i, `host${i}-with-many-letters.ports.test`);
            assert.equal((reply.flags ?? 0) & 0xf, 3, "NXDOMAIN");
          }
          const names = (await waitFor(() => capture.packets(), (p) => p.length >= 11))
            .map((p) => wireName(p.payload));
          // One query per name: dnsmasq kept the case, nothing was asked again.
          assert.equal(names.length, 11, names.join(" "));
          assert.equal(new Set(names.map((n) => n.toLowerCase())).size, 11);
          // Random case: "www.ports.test" comes out all lower or all upper once in 2,048 tries.
          const mixed = names.filter((n) => n !== n.toLowerCase() && n !== n.toUpperCase());
          assert.ok(mixed.length >= 10, `mixed case on the wire: ${names.join(" ")}`);
        } finally {
          await capture.stop();
          await stub.close();
        }
      },
    );
  } finally {
    await dnsmasq.stop();
    await link.delete();
    await ns.delete();
  }
});

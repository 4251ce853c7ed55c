/**
 * Both UDP listener implementations (batched recvmmsg/sendmmsg through FFI, and
 * Deno.listenDatagram) behave the same to real clients: answers, the client's address (rules
 * match on it), IPv4 and IPv6, dropped garbage, truncation, and upstream answers sent later.
 *
 * @module
 */

import assert from "node:assert/strict";
import { validateConfig } from "../../src/config/parse.ts";
import { createStub } from "../../src/service/stub.ts";
import { mmsgAvailable, startMmsgUdpListener } from "../../src/listen/udp_mmsg.ts";
import { dig } from "../../testkit/dig.ts";
import { startDnsmasq } from "../../testkit/dnsmasq.ts";
import { sendRawUdp } from "../../testkit/dnspython.ts";
import { loopbackAddress } from "../../testkit/loopback.ts";
import { bigTxt, buildQuery } from "../../testkit/wire.ts";

for (const impl of ["mmsg", "deno"] as const) {
  Deno.test(`UDP listener (${impl}) serves real clients over IPv4 and IPv6`, async (t) => {
    if (impl === "mmsg") assert.ok(mmsgAvailable(), "the batched listener runs here (Linux, FFI)");
    const upstream = loopbackAddress();
    const [source, listen, client] = [
      loopbackAddress({ port: 0 }),
      loopbackAddress(),
      loopbackAddress({ port: 0 }),
    ];
    const text = bigTxt("l");
    const up = await startDnsmasq({
      address: upstream,
      zones: ["l.test"],
      records: [
        { name: "www.l.test", type: "A", value: "192.0.2.31" },
        { name: "big.l.test", type: "TXT", value: text },
      ],
    });
    const stub = await createStub(
      validateConfig({
        listen: [`${listen}:53`, "[::1]:0"],
        pvds: [{ id: "home.example", sourceAddresses: [source], servers: [upstream] }],
        rules: [{ match: { client: `${client}/32` }, action: "nxdomain" }],
      }),
      { log: () => {}, udpListener: impl },
    );
    const v6port = Number(stub.listening[1]!.split(":").at(-1));
    try {
      await t.step("a miss is answered when the upstream answers, a hit at once", async () => {
        for (let i = 0; i < 2; i++) {
          const r = await dig({ server: listen, name: "www.l.test" });
          assert.deepEqual(r.answers.map((a) => a.data), ["192.0.2.31"]);
        }
      });
      await t.step("the client's address reaches the rules", async () => {
        assert.equal(
          (await dig({ server: listen, name: "www.l.test", source: client })).status,
          "NXDOMAIN",
        );
      });
      await t.step("IPv6 clients", async () => {
        const r = await dig({ server: "::1", port: v6port, name: "localhost", type: "AAAA" });
        assert.deepEqual(r.answers.map((a) => a.data), ["::1"]);
      });
      await t.step("IPv6 clients in a burst (read in batches, answered to each)", async () => {
        const sock = Deno.listenDatagram({ hostname: "::1", port: 0, transport: "udp" });
        try {
          const to = { hostname: "::1", port: v6port, transport: "udp" as const };
          for (let i = 0; i < 100; i++) await sock.send(buildQuery(i, "localhost", 28), to);
          const got = new Set<number>();
          const buf = new Uint8Array(512);
          const deadline = setTimeout(() => sock.close(), 5000);
          try {
            while (got.size < 100) {
              const [reply] = await sock.receive(buf);
              got.add(reply[0]! << 8 | reply[1]!);
            }
          } finally {
            clearTimeout(deadline);
          }
          assert.equal(got.size, 100);
        } finally {
          try {
            sock.close();
          } catch { /* closed by the deadline */ }
        }
      });
      await t.step("garbage is dropped and the next query answered", async () => {
        const none = await sendRawUdp({
          server: listen,
          bytes: new Uint8Array([1, 2, 3, 4, 5]),
          timeoutMs: 300,
        });
        assert.equal(none, null);
        const reply = await sendRawUdp({ server: listen, bytes: buildQuery(0x4242, "localhost") });
        assert.ok(reply && reply[0] === 0x42 && reply[1] === 0x42);
      });
      await t.step("a query over 4096 bytes is dropped by both listeners alike", async () => {
        // localhost A with an OPT whose padding option (code 12) makes it `total` bytes.
        const padded = (total: number) => {
          const q = buildQuery(0x4343, "localhost");
          q[11] = 1; // ARCOUNT
          const pad = total - q.length - 15;
          const opt = new Uint8Array(15 + pad);
          opt.set([0, 0, 41, 0x10, 0, 0, 0, 0, 0, (4 + pad) >> 8, (4 + pad) & 0xff, 0, 12]);
          opt.set([pad >> 8, pad & 0xff], 13);
          return new Uint8Array([...q, ...opt]);
        };
        assert.equal(
          await sendRawUdp({ server: listen, bytes: padded(4200), timeoutMs: 300 }),
          null,
        );
        const reply = await sendRawUdp({ server: listen, bytes: padded(4000) });
        assert.ok(reply && reply[0] === 0x43 && (reply[3]! & 0xf) === 0, "just under: answered");
      });
      await t.step("a big answer is truncated for a client without EDNS", async () => {
        const r = await dig({
          server: listen,
          name: "big.l.test",
          type: "TXT",
          edns: false,
          extra: ["+ignore"],
        });
        assert.ok(r.flags.includes("tc"), r.raw);
        assert.ok(r.msgSize! <= 512);
      });
      await t.step("many queries at once, hits and misses, all answered", async () => {
        const sock = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
        try {
          const want = new Set<number>();
          // 200: a burst the default socket buffer (about 256 small datagrams) holds.
          for (let i = 0; i < 200; i++) {
            want.add(i);
            const name = i % 3 === 0 ? `n${i}.l.test` : "www.l.test"; // misses get NXDOMAIN upstream
            await sock.send(buildQuery(i, name), { hostname: listen, port: 53, transport: "udp" });
          }
          const deadline = Date.now() + 5000;
          while (want.size && Date.now() < deadline) {
            const got = await Promise.race([
              sock.receive(),
              new Promise<null>((r) => setTimeout(() => r(null), 500)),
            ]);
            if (!got) continue;
            want.delete((got[0][0]! << 8) | got[0][1]!);
          }
          assert.equal(want.size, 0, `unanswered: ${[...want].slice(0, 10)}`);
        } finally {
          sock.close();
        }
      });
    } finally {
      await stub.close();
      await up.stop();
    }
  });
}

Deno.test("the batched UDP listener asks for a 4 MiB receive buffer (absorbs event-loop pauses)", async () => {
  const listen = loopbackAddress();
  const udp = startMmsgUdpListener(
    { listener: { text: `${listen}:53`, address: listen, port: 53 } },
    () => null,
    () => {},
  );
  try {
    // The kernel reports twice the size asked; without SO_RCVBUFFORCE (not root) it is capped
    // by net.core.rmem_max, so only assert the full size where the test runs as root (CI).
    const root = Deno.uid() === 0;
    assert.ok(udp.receiveBuffer >= (root ? 8 * 1024 * 1024 : 1), `got ${udp.receiveBuffer}`);
  } finally {
    await udp.close();
  }
});

import assert from "node:assert/strict";
import { validateConfig } from "../../src/config/parse.ts";
import { createStub } from "../../src/service/stub.ts";
import { loopbackAddress } from "../../testkit/loopback.ts";
import { TcpDnsClient } from "../../testkit/tcp_frames.ts";
import { buildQuery } from "../../testkit/wire.ts";

Deno.test("TCP listener (RFC 7766): pipelined queries answered as they complete, idle close, bounded connections", async (t) => {
  const listen = loopbackAddress();
  const silent = loopbackAddress();
  const source = loopbackAddress({ port: 0 });
  const hole = Deno.listenDatagram({ hostname: silent, port: 53, transport: "udp" });
  const holeLoop = (async () => {
    try {
      for (;;) await hole.receive();
    } catch { /* closed */ }
  })();
  const stub = await createStub(
    validateConfig({
      listen: [`${listen}:53`],
      pvds: [{ id: "slow.example", sourceAddresses: [source], servers: [silent], default: true }],
      upstream: { timeoutMs: 300, deadlineMs: 600 },
      limits: { tcpConnections: 2, tcpIdleMs: 400 },
    }),
    { log: () => {} },
  );
  const conns: TcpDnsClient[] = [];
  try {
    const a = await TcpDnsClient.open(listen);
    conns.push(a);

    await t.step(
      "a later fast query is answered before an earlier slow one, on one connection",
      async () => {
        await a.send(buildQuery(1, "www.slow.test"), buildQuery(2, "localhost"));
        const first = await a.read();
        const second = await a.read();
        assert.ok(first && second);
        assert.equal((first[0]! << 8) | first[1]!, 2, "localhost answered first");
        assert.equal(first[3]! & 0xf, 0);
        assert.equal((second[0]! << 8) | second[1]!, 1);
        assert.equal(second[3]! & 0xf, 2, "the dead PvD answers SERVFAIL");
      },
    );

    await t.step("connections beyond tcpConnections are closed at once", async () => {
      const b = await TcpDnsClient.open(listen);
      conns.push(b);
      const c = await TcpDnsClient.open(listen);
      conns.push(c);
      assert.equal(await c.read(), null, "third connection closed");
      await b.send(buildQuery(3, "localhost"));
      const reply = await b.read();
      assert.equal(reply && ((reply[0]! << 8) | reply[1]!), 3, "the second one is served");
    });

    await t.step("an idle connection is closed by the server", async () => {
      assert.equal(await a.read(), null);
    });
  } finally {
    for (const c of conns) {
      try {
        c.close();
      } catch { /* closed by the server */ }
    }
    await stub.close();
    hole.close();
    await holeLoop;
  }
});

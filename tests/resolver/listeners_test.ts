import assert from "node:assert/strict";
import { validateConfig } from "../../resolver/config.ts";
import { createStub } from "../../resolver/stub.ts";
import { loopbackAddress } from "../_support/loopback.ts";
import { buildQuery } from "../_support/wire.ts";

/** Reads whole length-prefixed messages from a TCP connection; null when it was closed. */
async function readFrame(
  conn: Deno.TcpConn,
  state: { buf: Uint8Array },
): Promise<Uint8Array | null> {
  const chunk = new Uint8Array(4096);
  for (;;) {
    if (state.buf.length >= 2) {
      const len = (state.buf[0]! << 8) | state.buf[1]!;
      if (state.buf.length >= 2 + len) {
        const msg = state.buf.slice(2, 2 + len);
        state.buf = state.buf.slice(2 + len);
        return msg;
      }
    }
    const n = await conn.read(chunk).catch(() => null);
    if (n === null) return null;
    const next = new Uint8Array(state.buf.length + n);
    next.set(state.buf);
    next.set(chunk.subarray(0, n), state.buf.length);
    state.buf = next;
  }
}

function frame(msg: Uint8Array): Uint8Array {
  const out = new Uint8Array(msg.length + 2);
  out[0] = msg.length >> 8;
  out[1] = msg.length & 0xff;
  out.set(msg, 2);
  return out;
}

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
  const conns: Deno.TcpConn[] = [];
  try {
    const a = await Deno.connect({ hostname: listen, port: 53 });
    conns.push(a);
    const state = { buf: new Uint8Array(0) };

    await t.step(
      "a later fast query is answered before an earlier slow one, on one connection",
      async () => {
        await a.write(
          new Uint8Array([
            ...frame(buildQuery(1, "www.slow.test")),
            ...frame(buildQuery(2, "localhost")),
          ]),
        );
        const first = await readFrame(a, state);
        const second = await readFrame(a, state);
        assert.ok(first && second);
        assert.equal((first[0]! << 8) | first[1]!, 2, "localhost answered first");
        assert.equal(first[3]! & 0xf, 0);
        assert.equal((second[0]! << 8) | second[1]!, 1);
        assert.equal(second[3]! & 0xf, 2, "the dead PvD answers SERVFAIL");
      },
    );

    await t.step("connections beyond tcpConnections are closed at once", async () => {
      const b = await Deno.connect({ hostname: listen, port: 53 });
      conns.push(b);
      const c = await Deno.connect({ hostname: listen, port: 53 });
      conns.push(c);
      assert.equal(await readFrame(c, { buf: new Uint8Array(0) }), null, "third connection closed");
      await b.write(frame(buildQuery(3, "localhost")));
      const reply = await readFrame(b, { buf: new Uint8Array(0) });
      assert.equal(reply && ((reply[0]! << 8) | reply[1]!), 3, "the second one is served");
    });

    await t.step("an idle connection is closed by the server", async () => {
      assert.equal(await readFrame(a, state), null);
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

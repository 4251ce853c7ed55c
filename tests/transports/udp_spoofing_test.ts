/**
 * Forged answers against the UDP transport (RFC 5452): real sockets on loopback play the
 * upstream and the forger. Each test runs with sockets connected through FFI and without.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import * as packet from "dns-packet";
import { LeakGuard } from "../../src/policy/leak_guard.ts";
import { parseServer } from "../../src/config/schema.ts";
import { buildUpstreamQuery } from "../../src/dns/query.ts";
import { CaseMismatchError, SPOOF_BURST, TransportError } from "../../src/transports/transport.ts";
import { UdpTransport } from "../../src/transports/udp.ts";
import { answerA } from "../../testkit/fake_servers.ts";
import { loopbackAddress } from "../../testkit/loopback.ts";
import { socketsOf } from "../../testkit/sockets.ts";

const REAL = "192.0.2.1";
const FORGED = "203.0.113.66";

/**
 * An upstream on `address:53` whose `respond` decides what is sent for each query (any number of
 * datagrams, from any socket); it records the source port of each query.
 */
function scriptedUpstream(
  address: string,
  respond: (sock: Deno.DatagramConn, query: Uint8Array, from: Deno.NetAddr) => Promise<void>,
) {
  const sock = Deno.listenDatagram({ hostname: address, port: 53, transport: "udp" });
  const ports: number[] = [];
  let rounds = 0;
  const loop = (async () => {
    try {
      for (let i = 0; i < 10_000; i++) {
        const [data, from] = await sock.receive();
        ports.push((from as Deno.NetAddr).port);
        await respond(sock, data, from as Deno.NetAddr);
        rounds++;
      }
    } catch { /* closed */ }
  })();
  return {
    ports,
    /** Queries fully responded to. */
    get rounds() {
      return rounds;
    },
    async close() {
      sock.close();
      await loop;
    },
  };
}

function setup(connect: boolean) {
  const serverAddress = loopbackAddress();
  const source = loopbackAddress({ port: 0 });
  const server = parseServer(serverAddress);
  const pvd = { id: "spoof.test", sourceAddresses: [source], servers: [server] };
  const told: number[] = [];
  const transport = new UdpTransport({
    pvd: pvd.id,
    server,
    source,
    guard: new LeakGuard([pvd]),
    connect,
    onUnexpectedAnswer: (burstPorts) => told.push(burstPorts),
  });
  return { serverAddress, source, transport, told };
}

function query(id: number, qname: string, randomCase = false): Uint8Array {
  return buildUpstreamQuery({ id, qname, qtype: 1, qclass: 1, do: false, cd: false, randomCase });
}

function addressOf(answer: Uint8Array): string | undefined {
  const a = packet.decode(Buffer.from(answer)).answers?.[0];
  return a?.type === "A" ? a.data : undefined;
}

async function until(done: () => boolean, ms = 3000): Promise<void> {
  for (const end = Date.now() + ms; !done() && Date.now() < end;) {
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Runs `body` once with connected sockets (FFI) and once without. */
function bothModes(name: string, body: (connect: boolean) => Promise<void>): void {
  Deno.test(`UdpTransport: ${name}`, async (t) => {
    for (const connect of [true, false]) {
      await t.step(connect ? "connected (FFI)" : "unconnected", () => body(connect));
    }
  });
}

bothModes(
  "an answer with the query's ID and question sent to another of its ports is never taken",
  async (connect) => {
    const { serverAddress, source, transport, told } = setup(connect);
    let forged = 0;
    // From the server's own address and port: the real answer, then the same question and ID
    // with another address to every other port of the source: the spares the next query takes.
    const server = scriptedUpstream(serverAddress, async (sock, q, from) => {
      await sock.send(answerA(q, REAL), from);
      await new Promise((r) => setTimeout(r, 20)); // the used socket closed, spares bound
      for (const s of await socketsOf(source)) {
        const port = Number(s.local.slice(s.local.lastIndexOf(":") + 1));
        if (s.proto !== "udp" || port === from.port) continue;
        await sock.send(answerA(q, FORGED), { transport: "udp", hostname: source, port });
        forged++;
      }
    });
    try {
      for (let i = 0; i < 10; i++) {
        // Same ID and name every time: a forged answer waiting on a spare fits the next query.
        const answer = await transport.exchange(query(4242, "same.spoof.test."), {
          signal: AbortSignal.timeout(2000),
        });
        assert.equal(addressOf(answer), REAL, `query ${i} took a forged answer`);
        await until(() => server.rounds > i);
        // Unconnected, a spare reads and drops what comes before its query, as it comes.
        if (!connect) await until(() => told.length >= forged);
        if (!connect) assert.equal(told.length, forged, "dropped before the next query");
      }
      assert.ok(forged >= 10, `forged answers sent to spares: ${forged}`);
      // Connected, a spare is emptied when its query takes it: 9 queries took a sprayed spare.
      assert.ok(told.length >= 9, `${told.length} of ${forged} counted`);
    } finally {
      await transport.close();
      await server.close();
    }
  },
);

bothModes(
  "an answer sent to the query's port from another address or port is not taken",
  async (connect) => {
    const { serverAddress, transport, told } = setup(connect);
    const elsewhere = Deno.listenDatagram({
      hostname: loopbackAddress({ port: 0 }),
      port: 0,
      transport: "udp",
    });
    const sameAddressOtherPort = Deno.listenDatagram({
      hostname: serverAddress,
      port: 0,
      transport: "udp",
    });
    const server = scriptedUpstream(serverAddress, async (sock, q, from) => {
      await elsewhere.send(answerA(q, FORGED), from);
      await sameAddressOtherPort.send(answerA(q, FORGED), from);
      await new Promise((r) => setTimeout(r, 30));
      await sock.send(answerA(q, REAL), from);
    });
    try {
      for (let i = 0; i < 5; i++) {
        const answer = await transport.exchange(query(100 + i, `o${i}.spoof.test.`), {
          signal: AbortSignal.timeout(2000),
        });
        assert.equal(addressOf(answer), REAL);
      }
      // Connected, the kernel drops them before anything is read; else they are read, counted,
      // and dropped here.
      assert.equal(told.length, connect ? 0 : 10);
    } finally {
      await transport.close();
      await server.close();
      elsewhere.close();
      sameAddressOtherPort.close();
    }
  },
);

bothModes(
  "answers with another ID are counted, and a burst on one port warns once",
  async (connect) => {
    const { serverAddress, transport, told } = setup(connect);
    const server = scriptedUpstream(serverAddress, async (sock, q, from) => {
      for (let id = 0; id < 20; id++) {
        const forged = answerA(q, FORGED);
        forged[0] = ((q[0]! << 8 | q[1]!) + 1 + id) >> 8 & 0xff;
        forged[1] = ((q[0]! << 8 | q[1]!) + 1 + id) & 0xff;
        await sock.send(forged, from);
      }
      await new Promise((r) => setTimeout(r, 20));
      await sock.send(answerA(q, REAL), from);
    });
    try {
      for (let i = 0; i < 2; i++) {
        const answer = await transport.exchange(query(7000 + 100 * i, `w${i}.spoof.test.`), {
          signal: AbortSignal.timeout(2000),
        });
        assert.equal(addressOf(answer), REAL);
      }
      assert.equal(told.length, 40, "every datagram with another ID is told");
      // The first burst warns at once; the second, within 10 s, waits for a later warning.
      assert.deepEqual(told.flatMap((n, i) => n > 0 ? [[i, n]] : []), [[SPOOF_BURST - 1, 1]]);
    } finally {
      await transport.close();
      await server.close();
    }
  },
);

Deno.test("UdpTransport: connected, an ICMP port unreachable fails the query at once", async (t) => {
  const silent = parseServer(loopbackAddress()); // nothing listens there
  const source = loopbackAddress({ port: 0 });
  const guard = new LeakGuard([{ id: "icmp", sourceAddresses: [source], servers: [silent] }]);
  for (const connect of [true, false]) {
    await t.step(connect ? "connected: refused" : "unconnected: a timeout", async () => {
      const transport = new UdpTransport({ pvd: "icmp", server: silent, source, guard, connect });
      const started = performance.now();
      try {
        await assert.rejects(
          transport.exchange(query(1, "icmp.spoof.test."), { signal: AbortSignal.timeout(600) }),
          (e) => e instanceof TransportError && e.reason === (connect ? "refused" : "timeout"),
        );
        if (connect) assert.ok(performance.now() - started < 300, "refused before the timeout");
      } finally {
        await transport.close();
      }
    });
  }
});

bothModes(
  "with exactCase, an answer in another letter case fails the exchange",
  async (connect) => {
    const { serverAddress, transport } = setup(connect);
    let lowerCase = false;
    const names: string[] = [];
    const server = scriptedUpstream(serverAddress, async (sock, q, from) => {
      const answer = answerA(q, REAL);
      names.push(new TextDecoder().decode(q.subarray(12, 12 + 20)));
      if (lowerCase) {
        for (let i = 12; i < answer.length; i++) {
          if (answer[i]! >= 0x41 && answer[i]! <= 0x5a) answer[i]! += 0x20;
        }
      }
      await sock.send(answer, from);
    });
    try {
      const qname = "abcdefghijklmnopqrst.spoof.test.";
      const kept = await transport.exchange(query(1, qname, true), {
        signal: AbortSignal.timeout(2000),
        exactCase: true,
      });
      assert.equal(addressOf(kept), REAL, "a server that keeps the case is answered");
      assert.match(names[0]!, /[A-Z]/, "the name went out in mixed case");
      assert.match(names[0]!, /[a-z]/, "the name went out in mixed case");
      lowerCase = true;
      await assert.rejects(
        transport.exchange(query(2, qname, true), {
          signal: AbortSignal.timeout(2000),
          exactCase: true,
        }),
        (e) => e instanceof CaseMismatchError && e.reason === "bad-answer",
      );
      const loose = await transport.exchange(query(3, qname, true), {
        signal: AbortSignal.timeout(2000),
      });
      assert.equal(addressOf(loose), REAL, "without exactCase, case does not matter");
    } finally {
      await transport.close();
      await server.close();
    }
  },
);

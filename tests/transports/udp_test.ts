import assert from "node:assert/strict";
import { LeakGuard } from "../../src/policy/leak_guard.ts";
import { parseServer } from "../../src/config/schema.ts";
import { buildUpstreamQuery } from "../../src/dns/query.ts";
import {
  MAX_SPARE_SOCKETS,
  MIN_SPARE_SOCKETS,
  UdpTransport,
  type UdpTransportOptions,
} from "../../src/transports/udp.ts";
import { delayedUdpUpstream } from "../../testkit/fake_servers.ts";
import { loopbackAddress } from "../../testkit/loopback.ts";
import { socketsOf, waitForSockets } from "../../testkit/sockets.ts";
import { runTransportContract } from "./_contract.ts";

runTransportContract({ name: "UdpTransport", protocol: "udp", create: (o) => new UdpTransport(o) });
runTransportContract({
  name: "UdpTransport (unconnected, without FFI)",
  protocol: "udp",
  create: (o) => new UdpTransport({ ...o, connect: false }),
});

/** A real UDP server: answers at once, but holds back names starting with "la" for `lateMs`. */
function recordingServer(address: string, lateMs = 0) {
  return delayedUdpUpstream(address, (name) => name.startsWith("la") ? lateMs : 0);
}

function setup(options: Partial<UdpTransportOptions> = {}) {
  const serverAddress = loopbackAddress();
  const source = loopbackAddress({ port: 0 });
  const server = parseServer(serverAddress);
  const pvd = { id: "udp.test", sourceAddresses: [source], servers: [server] };
  const transport = new UdpTransport({
    pvd: pvd.id,
    server,
    source,
    guard: new LeakGuard([pvd]),
    ...options,
  });
  return { serverAddress, source, transport };
}

function query(id: number, qname: string): Uint8Array {
  return buildUpstreamQuery({ id, qname, qtype: 1, qclass: 1, do: false, cd: false });
}

/** A turn of the event loop, as between two client queries. */
const nextTask = () => new Promise((r) => setTimeout(r, 0));

/** The local ports of the UDP sockets this process holds on `source`. */
async function heldPorts(source: string): Promise<number[]> {
  return (await socketsOf(source)).filter((s) => s.proto === "udp").map((s) =>
    Number(s.local.slice(s.local.lastIndexOf(":") + 1))
  );
}

for (const connect of [true, false]) {
  const mode = connect ? "connected" : "unconnected";
  Deno.test(`UdpTransport (${mode}): every query has a port of its own, bound before it came`, async () => {
    const { serverAddress, source, transport } = setup({ connect });
    const server = recordingServer(serverAddress);
    try {
      assert.equal(transport.connected, connect);
      for (let i = 0; i < 200; i++) {
        const answer = await transport.exchange(query(i, `q${i}.udp.test.`), {
          signal: AbortSignal.timeout(2000),
        });
        assert.equal(answer[0]! << 8 | answer[1]!, i);
        await nextTask();
      }
      assert.equal(server.ports.length, 200);
      assert.equal(new Set(server.ports).size, 200, "no port carried two queries");
      // Only the first query found no spare: every other socket was bound off its path.
      assert.equal(transport.bindsOnPath, 1);
      // What is still held are spares: none of them ever carried a query.
      const held = await heldPorts(source);
      assert.ok(held.length <= MIN_SPARE_SOCKETS + 1, `spares held: ${held}`);
      for (const p of held) assert.ok(!server.ports.includes(p), `port ${p} was used and kept`);
    } finally {
      await transport.close();
      await server.close();
    }
    assert.deepEqual(await socketsOf(source), []);
  });
}

Deno.test("UdpTransport: many queries at once each get a port and an answer of their own", async () => {
  const { serverAddress, transport } = setup();
  const server = recordingServer(serverAddress);
  try {
    const ids = Array.from({ length: 50 }, (_, i) => 1000 + i * 7);
    const answers = await Promise.all(
      ids.map((id) =>
        transport.exchange(query(id, `m${id}.udp.test.`), { signal: AbortSignal.timeout(2000) })
      ),
    );
    for (const [i, a] of answers.entries()) {
      assert.equal(a[0]! << 8 | a[1]!, ids[i]);
      assert.equal(new TextDecoder().decode(a.subarray(13, 13 + a[12]!)), `m${ids[i]}`);
    }
    assert.equal(new Set(server.ports).size, 50);
  } finally {
    await transport.close();
    await server.close();
  }
});

Deno.test("UdpTransport: spares follow a burst up to their bound, and go back down when idle", async () => {
  const { serverAddress, source, transport } = setup({ spareIdleMs: 300 });
  const server = recordingServer(serverAddress);
  try {
    for (let round = 0; round < 3; round++) {
      await Promise.all(
        Array.from(
          { length: 40 },
          (_, i) =>
            transport.exchange(query(i, `b${round}-${i}.udp.test.`), {
              signal: AbortSignal.timeout(2000),
            }),
        ),
      );
      await nextTask();
    }
    const grown = await heldPorts(source);
    assert.equal(grown.length, MAX_SPARE_SOCKETS, `spares after bursts of 40: ${grown.length}`);
    const idle = await waitForSockets(source, (held) => held.length === MIN_SPARE_SOCKETS, 3000);
    assert.equal(idle.length, MIN_SPARE_SOCKETS, JSON.stringify(idle));
  } finally {
    await transport.close();
    await server.close();
  }
});

Deno.test("UdpTransport: an answer that comes after its query gave up is not taken for another", async () => {
  const { serverAddress, transport } = setup();
  const server = recordingServer(serverAddress, 300);
  try {
    // Same ID on purpose: the late answer carries the ID the next query waits under.
    await assert.rejects(
      transport.exchange(query(7, "late.udp.test."), { signal: AbortSignal.timeout(100) }),
      (e: Error) => e.name === "TransportError",
    );
    // Held back too: the first one's answer (same ID, another question) comes while this one
    // waits, and must not be taken for it.
    const answer = await transport.exchange(query(7, "lateb.udp.test."), {
      signal: AbortSignal.timeout(2000),
    });
    assert.notEqual(server.ports[0], server.ports[1], "each went out from a port of its own");
    assert.equal(new TextDecoder().decode(answer.subarray(13, 18)), "lateb");
  } finally {
    await transport.close();
    await server.close();
  }
});

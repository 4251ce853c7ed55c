import assert from "node:assert/strict";
import { LeakGuard } from "../../policy/leak_guard.ts";
import { parseServer } from "../../resolver/config_schema.ts";
import { buildUpstreamQuery } from "../../resolver/upstream_wire.ts";
import { UdpTransport, type UdpTransportOptions } from "../../transports/udp.ts";
import { delayedUdpUpstream } from "../_support/fake_servers.ts";
import { loopbackAddress } from "../_support/loopback.ts";
import { socketsOf } from "../_support/sockets.ts";
import { runTransportContract } from "./_contract.ts";

runTransportContract({ name: "UdpTransport", protocol: "udp", create: (o) => new UdpTransport(o) });

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

Deno.test("UdpTransport: a port carries a bounded number of queries, then a fresh one takes over", async () => {
  const { serverAddress, source, transport } = setup({ portQueries: 10 });
  const server = recordingServer(serverAddress);
  try {
    for (let i = 0; i < 35; i++) {
      const answer = await transport.exchange(query(i, `q${i}.udp.test.`), {
        signal: AbortSignal.timeout(2000),
      });
      assert.equal(answer[0]! << 8 | answer[1]!, i);
    }
    const perPort = new Map<number, number>();
    for (const p of server.ports) perPort.set(p, (perPort.get(p) ?? 0) + 1);
    assert.deepEqual([...perPort.values()], [10, 10, 10, 5], JSON.stringify([...perPort]));
    // Retired ports were closed once answered: only the current one is still held.
    const held = (await socketsOf(source)).filter((s) => s.proto === "udp");
    assert.equal(held.length, 1, JSON.stringify(held));
  } finally {
    await transport.close();
    await server.close();
  }
  assert.deepEqual(await socketsOf(source), []);
});

Deno.test("UdpTransport: a port stops taking queries when it is older than portAgeMs", async () => {
  const { serverAddress, transport } = setup({ portAgeMs: 150 });
  const server = recordingServer(serverAddress);
  try {
    const ask = (i: number) =>
      transport.exchange(query(i, `a${i}.udp.test.`), { signal: AbortSignal.timeout(2000) });
    await ask(1);
    await ask(2);
    await new Promise((r) => setTimeout(r, 200));
    await ask(3);
    assert.equal(server.ports.length, 3);
    assert.equal(server.ports[0], server.ports[1], "one port for queries in a row");
    assert.notEqual(server.ports[2], server.ports[1], "a fresh port after portAgeMs");
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
    // Held back too: the first one's answer (same ID, another question) arrives while this one
    // waits, and must not be taken for it.
    const answer = await transport.exchange(query(7, "lateb.udp.test."), {
      signal: AbortSignal.timeout(2000),
    });
    assert.equal(server.ports[0], server.ports[1], "both went out from one port");
    assert.equal(new TextDecoder().decode(answer.subarray(13, 18)), "lateb");
  } finally {
    await transport.close();
    await server.close();
  }
});

Deno.test("UdpTransport: many queries at once on one port each get their own answer", async () => {
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
    assert.equal(new Set(server.ports).size, 1);
  } finally {
    await transport.close();
    await server.close();
  }
});

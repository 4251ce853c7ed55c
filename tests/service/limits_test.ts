/**
 * Resource bounds (issue 8 part 3): each bound is reached, holds (dropped, refused or slowed),
 * and is counted in `pvdns_limit_reached_total`. Upstreams are real sockets that never answer,
 * so queries stay in flight for as long as the test needs.
 */
import assert from "node:assert/strict";
import { validateConfig } from "../../src/config/parse.ts";
import { createStub, type Stub } from "../../src/service/stub.ts";
import { udpBlackHole } from "../../testkit/fake_servers.ts";
import { loopbackAddress } from "../../testkit/loopback.ts";
import { sleep } from "../../testkit/exec.ts";
import { TcpDnsClient as TcpClient } from "../../testkit/tcp_frames.ts";
import { buildQuery } from "../../testkit/wire.ts";

const rcodeOf = (reply: Uint8Array | null) => reply === null ? "none" : reply[3]! & 0xf;

/** A stub whose only PvD's server never answers; upstream tries last `timeoutMs`. */
async function stubWithSilentUpstream(limits: Record<string, number>, timeoutMs = 600) {
  const silent = loopbackAddress();
  const hole = udpBlackHole(silent);
  const stub = await createStub(
    validateConfig({
      listen: [`${loopbackAddress()}:53`],
      pvds: [{
        id: "p.example",
        sourceAddresses: [loopbackAddress({ port: 0 })],
        servers: [silent],
      }],
      upstream: { timeoutMs, deadlineMs: timeoutMs, maxFails: 0 },
      cache: { servfailTtl: 0 },
      limits,
    }),
    { log: () => {} },
  );
  return { stub, hole };
}

function limitCount(stub: Stub, name: string): number {
  return stub.metrics.limitsReached.get(name) ?? 0;
}

const udpClient = (address: string) => ({ address, port: 5300, transport: "udp" as const });
const tcpClient = (address: string) => ({ address, port: 5300, transport: "tcp" as const });

Deno.test("limits.maxInFlight: queries past the bound are dropped (UDP) or refused (TCP), counted", async () => {
  const { stub, hole } = await stubWithSilentUpstream({ maxInFlight: 3 });
  try {
    const waiting = [1, 2, 3].map((i) =>
      stub.handle(buildQuery(i, `n${i}.test`), udpClient(`127.0.0.${i}`))
    );
    assert.equal(stub.inFlight, 3);
    assert.equal(await stub.handle(buildQuery(4, "n4.test"), udpClient("127.0.0.4")), null);
    assert.equal(rcodeOf(await stub.handle(buildQuery(5, "n5.test"), tcpClient("127.0.0.5"))), 5);
    assert.equal(limitCount(stub, "in_flight"), 2);
    // The three taken queries end as SERVFAIL when their server times out; then room again.
    assert.deepEqual((await Promise.all(waiting)).map(rcodeOf), [2, 2, 2]);
    assert.equal(stub.inFlight, 0);
    const again = stub.handle(buildQuery(6, "n6.test"), udpClient("127.0.0.6"));
    assert.equal(stub.inFlight, 1, "the bound frees up once queries finish");
    assert.equal(rcodeOf(await again), 2);
    assert.equal(hole.seen, 4, "dropped and refused queries never went upstream");
  } finally {
    await stub.close();
    await hole.close();
  }
});

Deno.test("limits.maxInFlightPerClient: one client past its bound does not starve another", async () => {
  const { stub, hole } = await stubWithSilentUpstream({ maxInFlightPerClient: 2 });
  try {
    const a = [1, 2].map((i) => stub.handle(buildQuery(i, `a${i}.test`), udpClient("127.0.0.1")));
    assert.equal(await stub.handle(buildQuery(3, "a3.test"), udpClient("127.0.0.1")), null);
    const b = stub.handle(buildQuery(4, "b1.test"), udpClient("127.0.0.2"));
    assert.equal(stub.inFlight, 3, "the second client's query is taken");
    assert.equal(limitCount(stub, "client_in_flight"), 1);
    assert.deepEqual((await Promise.all([...a, b])).map(rcodeOf), [2, 2, 2]);
  } finally {
    await stub.close();
    await hole.close();
  }
});

Deno.test("limits.maxUpstreamQueries: upstream exchanges past the bound get SERVFAIL at once, counted", async () => {
  const { stub, hole } = await stubWithSilentUpstream({ maxUpstreamQueries: 2 }, 800);
  try {
    const held = [1, 2].map((i) =>
      stub.handle(buildQuery(i, `u${i}.test`), udpClient("127.0.0.1"))
    );
    await hole.received(2); // the two exchanges are open (their queries reached the upstream)
    let heldSettled = 0;
    for (const h of held) h.finally(() => heldSettled++);
    const over = await stub.handle(buildQuery(3, "u3.test"), udpClient("127.0.0.1"));
    assert.equal(rcodeOf(over), 2);
    // Order, not time: the third query is answered while both exchanges still wait for a reply
    // (they give up only after the upstream timeout), so it did not wait for a slot.
    assert.equal(heldSettled, 0, "answered before either held exchange settled");
    assert.equal(limitCount(stub, "upstream_queries"), 1);
    assert.equal(hole.seen, 2, "only two exchanges went out");
    assert.deepEqual((await Promise.all(held)).map(rcodeOf), [2, 2]);
  } finally {
    await stub.close();
    await hole.close();
  }
});

Deno.test("limits.tcpPipeline: a connection with that many unanswered queries is not read further", async () => {
  const { stub, hole } = await stubWithSilentUpstream({ tcpPipeline: 2 }, 400);
  const [address] = stub.listening[0]!.split(":");
  const client = await TcpClient.open(address!);
  try {
    await client.send(...[1, 2, 3, 4, 5].map((i) => buildQuery(i, `t${i}.test`)));
    await sleep(150);
    assert.equal(hole.seen, 2, "only the first two queries were taken");
    assert.ok(limitCount(stub, "tcp_pipeline") >= 1);
    // Each answer written makes room for one more: all five are answered in the end.
    const ids: number[] = [];
    for (let i = 0; i < 5; i++) {
      const reply = await client.read();
      assert.ok(reply, `reply ${i + 1} arrived`);
      assert.equal(reply[3]! & 0xf, 2);
      ids.push((reply[0]! << 8) | reply[1]!);
    }
    assert.deepEqual(ids.sort(), [1, 2, 3, 4, 5]);
    assert.equal(hole.seen, 5);
  } finally {
    client.close();
    await stub.close();
    await hole.close();
  }
});

Deno.test("limits.tcpReadMs: a message trickled in byte by byte (slow-loris) is cut off", async () => {
  const { stub, hole } = await stubWithSilentUpstream({ tcpReadMs: 300, tcpIdleMs: 5000 });
  const [address] = stub.listening[0]!.split(":");
  const slow = await TcpClient.open(address!);
  const fine = await TcpClient.open(address!);
  try {
    const frame = [0, 0, ...buildQuery(7, "localhost")];
    frame[1] = frame.length - 2;
    let closedAfter = -1;
    // One byte every 50 ms: the idle timer alone (5 s) would never fire.
    for (let i = 0; i < frame.length; i++) {
      const wrote = await slow.conn.write(new Uint8Array([frame[i]!])).catch(() => 0);
      if (wrote === 0) {
        closedAfter = i;
        break;
      }
      await sleep(50);
    }
    assert.equal(await slow.read(), null, "the slow connection was closed, nothing answered");
    assert.ok(closedAfter === -1 || closedAfter < frame.length);
    assert.equal(limitCount(stub, "tcp_read_timeout"), 1);
    // A connection that sends whole messages is not touched by the read deadline.
    await fine.send(buildQuery(8, "localhost"));
    const reply = await fine.read();
    assert.ok(reply);
    assert.equal(reply[3]! & 0xf, 0);
  } finally {
    slow.close();
    fine.close();
    await stub.close();
    await hole.close();
  }
});

Deno.test("limits.tcpConnections: connections past the bound are closed at once, counted", async () => {
  const { stub, hole } = await stubWithSilentUpstream({ tcpConnections: 1 });
  const [address] = stub.listening[0]!.split(":");
  const first = await TcpClient.open(address!);
  const second = await TcpClient.open(address!);
  try {
    await first.send(buildQuery(1, "localhost"));
    assert.ok(await first.read(), "the first connection is served");
    await second.send(buildQuery(2, "localhost")).catch(() => {});
    assert.equal(await second.read(), null, "the second was closed");
    assert.equal(limitCount(stub, "tcp_connections"), 1);
  } finally {
    first.close();
    second.close();
    await stub.close();
    await hole.close();
  }
});

Deno.test("Stub.close({ drainMs }): queries in flight are answered, new ones are not taken", async () => {
  // An upstream that answers after 300 ms.
  const server = loopbackAddress();
  const sock = Deno.listenDatagram({ hostname: server, port: 53, transport: "udp" });
  const serving = (async () => {
    try {
      for (;;) {
        const [q, from] = await sock.receive();
        setTimeout(() => {
          const reply = q.slice();
          reply[2] = 0x81;
          reply[3] = 0x83; // NXDOMAIN, enough to be an answer
          sock.send(reply, from).catch(() => {});
        }, 300);
      }
    } catch { /* closed */ }
  })();
  const listen = loopbackAddress();
  const stub = await createStub(
    validateConfig({
      listen: [`${listen}:53`],
      pvds: [{
        id: "p.example",
        sourceAddresses: [loopbackAddress({ port: 0 })],
        servers: [server],
      }],
    }),
    { log: () => {} },
  );
  const client = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  try {
    await client.send(buildQuery(1, "slow.test"), { transport: "udp", hostname: listen, port: 53 });
    await sleep(100);
    assert.equal(stub.inFlight, 1);
    const closing = stub.close({ drainMs: 2000 });
    await sleep(50);
    await client.send(buildQuery(2, "late.test"), { transport: "udp", hostname: listen, port: 53 });
    const [reply] = await client.receive();
    assert.equal((reply[0]! << 8) | reply[1]!, 1, "the query in flight was answered");
    assert.equal(reply[3]! & 0xf, 3);
    await closing;
    const late = await Promise.race([
      client.receive().then(() => "answered"),
      sleep(400).then(() => "silent"),
    ]);
    assert.equal(late, "silent", "the query sent after the stop was not taken");
  } finally {
    client.close();
    sock.close();
    await serving;
    await stub.close();
  }
});

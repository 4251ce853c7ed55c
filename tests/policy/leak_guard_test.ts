import assert from "node:assert/strict";
import { LeakBlockedError, LeakGuard } from "../../src/policy/leak_guard.ts";
import { UdpTransport } from "../../src/transports/udp.ts";
import { TcpTransport } from "../../src/transports/tcp.ts";
import { loopbackAddress } from "../../testkit/loopback.ts";
import { buildUpstreamQuery } from "../../src/dns/query.ts";

const server = (address: string) => ({
  text: address,
  protocol: "udp" as const,
  address,
  family: 4 as const,
  port: 53,
});

Deno.test("LeakGuard.check() refuses another PvD's server and a foreign source, and counts", () => {
  const logged: string[] = [];
  const guard = new LeakGuard([
    { id: "home", sourceAddresses: ["127.1.0.2"], servers: [{ address: "127.1.0.1", port: 53 }] },
    { id: "vpn", sourceAddresses: ["127.1.0.4"], servers: [{ address: "127.1.0.3", port: 53 }] },
  ], { onBlocked: (pvd, dst, src, why) => logged.push(`${pvd} ${dst} ${src} ${why}`) });
  guard.check("home", "127.1.0.1", 53, "127.1.0.2");
  assert.throws(() => guard.check("home", "127.1.0.3", 53, "127.1.0.2"), LeakBlockedError);
  assert.throws(() => guard.check("home", "127.1.0.1", 53, "127.1.0.4"), /source address/);
  assert.throws(() => guard.check("home", "127.1.0.1", 5353, "127.1.0.2"), /destination/);
  assert.throws(() => guard.check("gone", "127.1.0.1", 53, "127.1.0.2"), /unknown PvD/);
  assert.throws(() => guard.check("home", "127.1.0.3", 53, "127.1.0.2"), LeakBlockedError);
  assert.equal(guard.blocked.get("home"), 4);
  assert.equal(logged.length, 4, "the repeated refusal is logged once");
  assert.match(logged[0]!, /^home 127\.1\.0\.3:53 127\.1\.0\.2 destination/);
});

Deno.test("a transport built for the wrong server sends nothing: the guard refuses first", async () => {
  const victim = loopbackAddress();
  const source = loopbackAddress({ port: 0 });
  const listener = Deno.listenDatagram({ hostname: victim, port: 53, transport: "udp" });
  const guard = new LeakGuard([{
    id: "home",
    sourceAddresses: [source],
    servers: [{ address: "127.1.9.9", port: 53 }],
  }], {
    onBlocked: () => {},
  });
  const query = buildUpstreamQuery({
    id: 1,
    qname: "leak.test.",
    qtype: 1,
    qclass: 1,
    do: false,
    cd: false,
  });
  try {
    for (const T of [UdpTransport, TcpTransport]) {
      const t = new T({ pvd: "home", server: server(victim), source, guard });
      await assert.rejects(
        t.exchange(query, { signal: AbortSignal.timeout(500) }),
        LeakBlockedError,
      );
      await t.close();
    }
    let received = false;
    const wait = listener.receive().then(() => (received = true), () => {});
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(received, false, "no datagram reached the other network's server");
    assert.equal(guard.blocked.get("home"), 2);
    listener.close();
    await wait;
  } finally {
    try {
      listener.close();
    } catch { /* closed */ }
  }
});

Deno.test("LeakGuard.learn() admits an address only for the PvD that learned it, across updates", () => {
  const pvds = [
    { id: "home", sourceAddresses: ["127.1.0.2"], servers: [{ address: "127.1.0.1", port: 53 }] },
    { id: "vpn", sourceAddresses: ["127.1.0.4"], servers: [{ address: "127.1.0.3", port: 53 }] },
  ];
  const guard = new LeakGuard(pvds, { onBlocked: () => {} });
  assert.throws(() => guard.check("home", "127.1.0.9", 443, "127.1.0.2"), LeakBlockedError);
  guard.learn("home", "127.1.0.9", 443);
  guard.check("home", "127.1.0.9", 443, "127.1.0.2");
  assert.throws(() => guard.check("vpn", "127.1.0.9", 443, "127.1.0.4"), LeakBlockedError);
  assert.throws(() => guard.check("home", "127.1.0.9", 443, "127.1.0.4"), /source address/);
  guard.update(pvds);
  guard.check("home", "127.1.0.9", 443, "127.1.0.2"); // still there after a reload
  guard.update([pvds[1]!]);
  guard.update(pvds);
  assert.throws(
    () => guard.check("home", "127.1.0.9", 443, "127.1.0.2"),
    LeakBlockedError,
    "forgotten with its PvD",
  );
});

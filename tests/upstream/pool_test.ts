import assert from "node:assert/strict";
import * as packet from "dns-packet";
import { Buffer } from "node:buffer";
import { LeakGuard } from "../../src/policy/leak_guard.ts";
import { ConfigError, parseConfig } from "../../src/config/parse.ts";
import { parseServer } from "../../src/config/schema.ts";
import type { PvdConfig, ServerConfig } from "../../src/config/types.ts";
import { PvdUpstreams, UpstreamFailure } from "../../src/upstream/pool.ts";
import type { CreateTransportOptions } from "../../src/transports/create.ts";
import {
  type ExchangeOptions,
  type Transport,
  TransportError,
} from "../../src/transports/transport.ts";
import { startDnsmasq } from "../../testkit/dnsmasq.ts";
import { answerA, tcpBlackHole, udpBlackHole } from "../../testkit/fake_servers.ts";
import { loopbackAddress } from "../../testkit/loopback.ts";
import { runPvdns } from "../../testkit/pvdns_process.ts";
import { makeTestPki } from "../../testkit/test_pki.ts";
import { startUnbound } from "../../testkit/unbound.ts";
import { bigTxt } from "../../testkit/wire.ts";
import { serverText } from "../transports/_contract.ts";

const CACHE = { maxEntries: 100, minTtl: 0, maxTtl: 86400, negativeMaxTtl: 3600, servfailTtl: 2 };
const Q = (qname: string, qtype = 1) => ({ qname, qtype, qclass: 1, do: false, cd: false });

function pvdFor(id: string, source: string, servers: string[]): PvdConfig {
  return {
    id,
    implicit: false,
    origin: "config",
    prefixes: [],
    sourceAddresses: [source],
    dnsZones: [],
    searchDomains: [],
    default: true,
    priority: 0,
    strictRoutes: false,
    servers: servers.map((a) => ({ text: a, protocol: "udp", address: a, family: 4, port: 53 })),
  };
}

/** A real UDP socket that reads queries and never answers: a black-holed server. */
function blackHole(address: string) {
  const at = address;
  const sock = Deno.listenDatagram({ hostname: address, port: 53, transport: "udp" });
  let seen = 0;
  const loop = (async () => {
    try {
      for (;;) {
        await sock.receive();
        seen++;
      }
    } catch { /* closed */ }
  })();
  return {
    address: at,
    get seen() {
      return seen;
    },
    async close() {
      sock.close();
      await loop;
    },
  };
}

Deno.test("PvdUpstreams fails over to the PvD's next server and learns to ask it first", async () => {
  const dead = loopbackAddress();
  const good = loopbackAddress();
  const source = loopbackAddress({ port: 0 });
  const hole = blackHole(dead);
  const dns = await startDnsmasq({
    address: good,
    zones: ["up.test"],
    records: [{ name: "a.up.test", type: "A", value: "192.0.2.5" }],
  });
  const pvd = pvdFor("home", source, [dead, good]);
  const up = new PvdUpstreams(pvd, {
    upstream: { timeoutMs: 300, deadlineMs: 2000 },
    cache: CACHE,
    guard: new LeakGuard([pvd]),
  });
  try {
    const r = await up.query(Q("a.up.test."));
    assert.equal(r.rcode, 0);
    assert.equal(hole.seen, 1, "the first server was tried once");
    assert.deepEqual(up.order.map((s) => s.address), [good, dead], "the failed server goes last");
    await up.query(Q("a.up.test.", 28));
    assert.equal(hole.seen, 1, "the next query went to the good server first");
    const log = await dns.queryLog();
    assert.ok(
      log.length >= 2 && log.every((q) => q.from === source),
      "every query came from the PvD's source address",
    );
  } finally {
    await up.close();
    await hole.close();
    await dns.stop();
  }
});

Deno.test("PvdUpstreams gives UpstreamFailure when every server of the PvD is dead, within the deadline", async () => {
  const a = blackHole(loopbackAddress());
  const b = loopbackAddress(); // nothing listens: ICMP port unreachable
  const source = loopbackAddress({ port: 0 });
  const pvd = pvdFor("vpn", source, [a.address, b]);
  const up = new PvdUpstreams(pvd, {
    upstream: { timeoutMs: 200, deadlineMs: 600 },
    cache: CACHE,
    guard: new LeakGuard([pvd]),
  });
  try {
    await assert.rejects(up.query(Q("x.test.")), (e) => {
      assert.ok(e instanceof UpstreamFailure);
      assert.equal(e.attempts.length, 2);
      return true;
    });
  } finally {
    await up.close();
    await a.close();
  }
});

Deno.test("PvdUpstreams ignores spoofed answers: wrong ID, wrong question, wrong source port", async () => {
  const address = loopbackAddress();
  const source = loopbackAddress({ port: 0 });
  const server = Deno.listenDatagram({ hostname: address, port: 53, transport: "udp" });
  const other = Deno.listenDatagram({ hostname: address, port: 0, transport: "udp" });
  const loop = (async () => {
    try {
      const [data, from] = await server.receive();
      const q = packet.decode(Buffer.from(data));
      const answer = (id: number, name: string, ip: string) =>
        new Uint8Array(packet.encode({
          type: "response",
          id,
          flags: packet.RECURSION_AVAILABLE,
          questions: [{ name, type: "A", class: "IN" }],
          answers: [{ type: "A", name, ttl: 60, data: ip }],
        }));
      const name = q.questions![0]!.name;
      await server.send(answer((q.id! + 1) & 0xffff, name, "203.0.113.1"), from); // wrong ID
      await server.send(answer(q.id!, "evil.test", "203.0.113.2"), from); // wrong question
      await other.send(answer(q.id!, name, "203.0.113.3"), from); // wrong source port
      await server.send(answer(q.id!, name, "192.0.2.44"), from); // the real one
    } catch { /* closed */ }
  })();
  const pvd = pvdFor("home", source, [address]);
  const up = new PvdUpstreams(pvd, {
    upstream: { timeoutMs: 1000, deadlineMs: 2000 },
    cache: CACHE,
    guard: new LeakGuard([pvd]),
  });
  try {
    const r = await up.query(Q("real.test."));
    const p = packet.decode(Buffer.from(r.wire));
    assert.deepEqual(p.answers?.map((a) => (a as { data: unknown }).data), ["192.0.2.44"]);
  } finally {
    await up.close();
    server.close();
    other.close();
    await loop;
  }
});

Deno.test("PvdUpstreams retries a truncated answer over TCP from the same source address", async () => {
  const address = loopbackAddress();
  const source = loopbackAddress({ port: 0 });
  const text = bigTxt("u");
  const dns = await startDnsmasq({
    address,
    zones: ["big.test"],
    records: [{ name: "t.big.test", type: "TXT", value: text }],
  });
  const pvd = pvdFor("home", source, [address]);
  const up = new PvdUpstreams(pvd, {
    upstream: { timeoutMs: 1000, deadlineMs: 3000 },
    cache: CACHE,
    guard: new LeakGuard([pvd]),
  });
  try {
    const r = await up.query(Q("t.big.test.", 16));
    const p = packet.decode(Buffer.from(r.wire));
    const got = (p.answers?.[0] as { data: Buffer[] }).data.map((b) => b.toString()).join("");
    assert.equal(got, text);
    const log = await dns.queryLog();
    assert.equal(log.length, 2, "once over UDP, once over TCP");
    assert.ok(log.every((q) => q.from === source));
  } finally {
    await up.close();
    await dns.stop();
  }
});

// ---------------------------------------------------------------------------------------------
// Health, racing and strict encrypted mode inside one PvD (issue 4).

const ANY = { qclass: 1, do: false, cd: false };

function pvdOf(
  id: string,
  source: string,
  servers: string[],
  extra: Partial<PvdConfig> = {},
): PvdConfig {
  return {
    ...pvdFor(id, source, []),
    servers: servers.map((s) => parseServer(s)),
    ...extra,
  };
}

/** A transport whose behaviour the test switches, counting what it is asked. */
class FakeTransport implements Transport {
  readonly protocol: ServerConfig["protocol"];
  readonly server: ServerConfig;
  readonly source: string;
  mode: "answer" | "fail" | "hang" | "tc" = "answer";
  /** Ordinary (non-probe) exchanges. */
  asked = 0;
  probes = 0;
  probesInFlight = 0;
  maxProbesInFlight = 0;
  constructor(o: CreateTransportOptions) {
    this.protocol = o.server.protocol;
    this.server = o.server;
    this.source = o.source;
  }
  async exchange(query: Uint8Array, { signal }: ExchangeOptions): Promise<Uint8Array> {
    const probe = query[12] === 0; // the root name: the health probe's `. NS`
    if (probe) {
      this.probes++;
      this.maxProbesInFlight = Math.max(this.maxProbesInFlight, ++this.probesInFlight);
    } else this.asked++;
    try {
      if (this.mode === "fail") throw new TransportError("refused", "fake: refused");
      if (this.mode === "hang") {
        await new Promise((_, reject) => {
          const fail = () => reject(new TransportError("timeout", "fake: no answer"));
          if (signal.aborted) fail();
          signal.addEventListener("abort", fail, { once: true });
        });
      }
      const answer = answerA(query);
      if (this.mode === "tc") answer[2]! |= 0x02;
      return answer;
    } finally {
      if (probe) this.probesInFlight--;
    }
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** Resolves once `pred()` holds; throws after `ms` (a hang, not a speed limit). */
async function eventually(pred: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

Deno.test("PvdUpstreams fails over inside the PvD on every wire: the black-holed server goes down, answers keep coming from the other, the other PvD sees nothing", async (t) => {
  const pki = await makeTestPki();
  const good = await startUnbound({
    address: loopbackAddress(),
    tls: pki.good,
    redirectZones: ["fo.test"],
    records: [{ name: "fo.test", type: "A", value: "192.0.2.77" }],
  });
  const otherDns = await startDnsmasq({
    address: loopbackAddress(),
    zones: ["fo.test"],
    records: [{ name: "f0.fo.test", type: "A", value: "198.51.100.1" }],
  });
  try {
    for (const protocol of ["udp", "tcp", "tls", "https"] as const) {
      await t.step(protocol, async () => {
        const source = loopbackAddress({ port: 0 });
        const holeServer = parseServer(serverText(protocol, loopbackAddress()));
        const hole = protocol === "udp"
          ? udpBlackHole(holeServer.address!, holeServer.port)
          : tcpBlackHole(holeServer.address!, holeServer.port);
        const reached = () => "seen" in hole ? hole.seen : hole.connections;
        const home = pvdOf("home.example", source, [
          holeServer.text,
          serverText(protocol, good.address),
        ], { caFile: pki.caFile });
        const other = pvdOf("other.example", loopbackAddress({ port: 0 }), [otherDns.address]);
        const guard = new LeakGuard([home, other], { onBlocked: () => {} });
        const up = new PvdUpstreams(home, {
          upstream: { timeoutMs: 500, deadlineMs: 3000, maxFails: 3 },
          cache: CACHE,
          guard,
          probeIntervalMs: 60_000, // no probe during the test
        });
        const ask = async (i: number) => {
          const r = await up.query({ qname: `f${i}.fo.test.`, qtype: 1, ...ANY });
          const p = packet.decode(Buffer.from(r.wire));
          assert.deepEqual(p.answers?.map((a) => a.type === "A" ? a.data : a.type), [
            "192.0.2.77",
          ]);
        };
        try {
          // Five at once: each tries the black hole first (config order), then the other.
          await Promise.all([0, 1, 2, 3, 4].map(ask));
          assert.ok(reached() >= 1, "the black hole was tried");
          const health = up.health.find((h) => h.server === holeServer.text)!;
          assert.equal(health.down, true, `down after ${health.fails} failures`);
          const afterBurst = reached();
          for (let i = 5; i < 10; i++) await ask(i);
          assert.equal(reached(), afterBurst, "a down server is not asked again");
          assert.deepEqual(up.order.map((s) => s.text).at(-1), holeServer.text);
          const seen = (await good.queryLog()).filter((q) => q.from === source);
          assert.equal(seen.length, 10, "every answer came from the PvD's other server");
          assert.deepEqual(await otherDns.queryLog({ settleMs: 0 }), []);
          assert.equal(guard.blocked.size, 0);
        } finally {
          await up.close();
          await hole.close();
        }
      });
    }
  } finally {
    await otherDns.stop();
    await good.stop();
    await pki.remove();
  }
});

Deno.test('PvdUpstreams with "parallel": 2 races the two best servers of the PvD: a black hole first in line no longer eats the deadline', async () => {
  const hole = udpBlackHole(loopbackAddress());
  const dns = await startDnsmasq({
    address: loopbackAddress(),
    zones: ["race.test"],
    records: [{ name: "a.race.test", type: "A", value: "192.0.2.9" }],
  });
  const otherDns = await startDnsmasq({
    address: loopbackAddress(),
    zones: ["race.test"],
    records: [{ name: "a.race.test", type: "A", value: "198.51.100.9" }],
  });
  const source = loopbackAddress({ port: 0 });
  const upstream = { timeoutMs: 1000, deadlineMs: 1000 }; // one try fills the whole budget
  const sequential = pvdOf("home.example", source, [hole.address, dns.address]);
  const racing = { ...sequential, parallel: 2 };
  const other = pvdOf("other.example", loopbackAddress({ port: 0 }), [otherDns.address]);
  const guard = new LeakGuard([sequential, other], { onBlocked: () => {} });
  const one = new PvdUpstreams(sequential, { upstream, cache: CACHE, guard });
  const two = new PvdUpstreams(racing, { upstream, cache: CACHE, guard });
  try {
    await assert.rejects(one.query({ qname: "a.race.test.", qtype: 1, ...ANY }), UpstreamFailure);
    const r = await two.query({ qname: "a.race.test.", qtype: 1, ...ANY });
    assert.equal(r.rcode, 0);
    assert.equal(hole.seen, 2, "both PvdUpstreams asked the black hole once");
    assert.equal((await dns.queryLog()).length, 1, "the race went to the PvD's other server");
    assert.deepEqual(await otherDns.queryLog({ settleMs: 0 }), [], "never another PvD");
  } finally {
    await one.close();
    await two.close();
    await hole.close();
    await dns.stop();
    await otherDns.stop();
  }
});

Deno.test("PvdUpstreams marks a server down after maxFails consecutive failures, probes it one probe at a time, and takes it back when it answers", async () => {
  const fakes = new Map<string, FakeTransport>();
  const home = pvdOf("home.example", "127.0.0.1", ["192.0.2.1", "192.0.2.2"], { parallel: 2 });
  const up = new PvdUpstreams(home, {
    upstream: { timeoutMs: 100, deadlineMs: 1000, maxFails: 3 },
    cache: CACHE,
    guard: new LeakGuard([home]),
    probeIntervalMs: 10,
    createTransport: (o) => {
      const f = new FakeTransport(o);
      fakes.set(o.server.text, f);
      return f;
    },
  });
  const flaky = fakes.get("192.0.2.1")!, steady = fakes.get("192.0.2.2")!;
  const flakyHealth = () => up.health.find((h) => h.server === "192.0.2.1")!;
  const ask = (i: number) => up.query({ qname: `h${i}.health.test.`, qtype: 1, ...ANY });
  try {
    // Two failures, an answer, two failures: never three in a row, so never down.
    for (const mode of ["fail", "fail", "answer", "fail", "fail"] as const) {
      flaky.mode = mode;
      const before = flaky.asked;
      await ask(flaky.asked);
      await eventually(() => flaky.asked > before, 1000, "the race asked both");
    }
    await eventually(() => flakyHealth().fails === 2, 1000, "two failures recorded");
    assert.equal(flakyHealth().down, false);
    // The third failure in a row: down, and a probe starts; probes hang for now.
    flaky.mode = "hang";
    await ask(100);
    await eventually(() => flakyHealth().down, 1000, "down after three failures");
    const askedWhenDown = flaky.asked;
    await Promise.all(Array.from({ length: 20 }, (_, i) => ask(200 + i)));
    await eventually(() => flaky.probes >= 3, 3000, "probes keep coming");
    assert.equal(flaky.asked, askedWhenDown, "a down server gets no queries, only probes");
    assert.equal(flaky.maxProbesInFlight, 1, "never two probes at once");
    assert.ok(steady.asked >= 21);
    // It answers again: the next probe takes it back.
    flaky.mode = "answer";
    await eventually(() => !flakyHealth().down, 3000, "back up after a probe answered");
    assert.equal(flakyHealth().fails, 0);
    // Its RTT starts again from the probe's, not from the penalty its failures earned (else it
    // would stay behind the other server for good).
    assert.ok(flakyHealth().srtt < 100, `srtt after the probe: ${flakyHealth().srtt}`);
    await ask(300);
    assert.equal(flaky.asked, askedWhenDown + 1, "asked again once up");
  } finally {
    await up.close();
  }
});

Deno.test("a strict encrypted PvD (tls/https only) never downgrades: a truncated DoT answer is not asked again over Do53", async () => {
  const address = loopbackAddress();
  const udp53 = udpBlackHole(address, 53);
  const tcp53 = tcpBlackHole(address, 53);
  const source = loopbackAddress({ port: 0 });
  const makeFakes = (fakes: FakeTransport[]) => (o: CreateTransportOptions) => {
    const f = new FakeTransport(o);
    f.mode = "tc";
    fakes.push(f);
    return f;
  };
  const strictFakes: FakeTransport[] = [];
  const strict = pvdOf("secure.example", source, [
    `tls://${address}#dns.test.example`,
    `https://${address}/dns-query#dns.test.example`,
  ]);
  // The control: a Do53 server is asked again over TCP on port 53 after TC, so the listeners
  // would see a downgrade if there were one.
  const plainFakes: FakeTransport[] = [];
  const plain = pvdOf("plain.example", source, [address]);
  const guard = new LeakGuard([strict, plain]);
  const options = { upstream: { timeoutMs: 300, deadlineMs: 600 }, cache: CACHE, guard };
  const secure = new PvdUpstreams(strict, { ...options, createTransport: makeFakes(strictFakes) });
  const clear = new PvdUpstreams(plain, { ...options, createTransport: makeFakes(plainFakes) });
  try {
    assert.equal(secure.strictEncrypted, true);
    assert.equal(clear.strictEncrypted, false);
    assert.deepEqual(strictFakes.map((f) => f.protocol), ["tls", "https"]);
    // A truncated answer over a stream is a bad answer (a partial answer must not be cached as
    // whole): each encrypted server fails in turn, and nothing is asked in clear.
    const failure = await secure.query({ qname: "big.strict.test.", qtype: 16, ...ANY }).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(failure instanceof UpstreamFailure, String(failure));
    assert.deepEqual(failure.attempts.map((a) => a.reason), ["bad-answer", "bad-answer"]);
    assert.equal(udp53.seen + tcp53.connections, 0, "nothing on port 53");
    await clear.query({ qname: "big.plain.test.", qtype: 16, ...ANY }).catch(() => {});
    assert.equal(tcp53.connections, 1, "control: the Do53 PvD did retry over TCP port 53");
  } finally {
    await secure.close();
    await clear.close();
    await udp53.close();
    await tcp53.close();
  }
});

Deno.test("pvdns doctor says each PvD's encryption policy", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pvdns-doctor-" });
  const config = {
    listen: ["127.0.0.1:0"],
    pvds: [
      {
        id: "secure.example",
        sourceAddresses: ["127.0.0.1"],
        servers: ["tls://127.0.0.2#dns.example.net", "https://127.0.0.2/dns-query#dns.example.net"],
      },
      {
        id: "mixed.example",
        sourceAddresses: ["127.0.0.1"],
        servers: ["tls://127.0.0.3#dns.example.net", "127.0.0.3"],
        dnsZones: ["mixed.example"],
      },
      {
        id: "plain.example",
        sourceAddresses: ["127.0.0.1"],
        servers: ["127.0.0.4"],
        dnsZones: ["plain.example"],
      },
      {
        id: "byrtt.example",
        sourceAddresses: ["127.0.0.1"],
        servers: ["tls://127.0.0.5#dns.example.net", "127.0.0.5"],
        dnsZones: ["byrtt.example"],
        encryption: "off",
      },
    ],
  };
  try {
    await Deno.writeTextFile(`${dir}/pvdns.json`, JSON.stringify(config));
    const r = await runPvdns(["doctor", "--config", `${dir}/pvdns.json`]);
    const lines = r.stdout.split("\n");
    const after = (pvd: string) => lines[lines.findIndex((l) => l.startsWith(`PvD ${pvd}`)) + 1];
    assert.equal(
      after("secure.example"),
      "  encrypted: strict (tls/https only), never falls back to Do53",
      r.stdout + r.stderr,
    );
    assert.equal(
      after("mixed.example"),
      "  encrypted: prefer, 1 Do53 server(s) asked only while every encrypted one is down",
    );
    assert.equal(
      after("byrtt.example"),
      "  encrypted: off, 1 of 2 server(s) are Do53 in clear, by RTT",
    );
    assert.equal(after("plain.example"), "  encrypted: no, every server is Do53 in clear");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("parseConfig() reads upstream.maxFails and a PvD's parallel, and refuses bad values", () => {
  const text = (upstream: unknown, parallel: unknown) =>
    JSON.stringify({
      upstream,
      pvds: [{ id: "a.example", sourceAddresses: ["192.0.2.2"], servers: ["192.0.2.1"], parallel }],
    });
  const config = parseConfig(text({ maxFails: 5 }, 2));
  assert.equal(config.upstream.maxFails, 5);
  assert.equal(config.pvds[0]!.parallel, 2);
  const defaults = parseConfig(JSON.stringify({
    pvds: [{ id: "a.example", sourceAddresses: ["192.0.2.2"], servers: ["192.0.2.1"] }],
  }));
  assert.equal(defaults.upstream.maxFails, undefined, "absent: PvdUpstreams uses 3");
  assert.equal(defaults.pvds[0]!.parallel, undefined, "absent: one server at a time");
  assert.throws(() => parseConfig(text({ maxFails: -1 }, 5)), (e) => {
    assert.ok(e instanceof ConfigError);
    assert.deepEqual(e.errors.map((l) => l.split(":")[0]), [
      "pvds[0].parallel",
      "upstream.maxFails",
    ]);
    return true;
  });
});

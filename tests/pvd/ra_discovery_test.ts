/**
 * The discovery state machine, driven through `startRaDiscovery` with everything injected: fake
 * sockets deliver encoded RAs, a fake clock moves time, a fake `ip` gives the interface's
 * addresses and a fake fetcher records every `/.well-known/pvd` fetch. Covers association,
 * lifetimes, packet checks, and RFC 8801 §4.1's timers, rate limits and give-up rules.
 */

import assert from "node:assert/strict";
import type { FetchOutcome, InfoFetchRequest } from "../../src/pvd/additional_info.ts";
import type { RaSocket, ReceivedPacket } from "../../src/pvd/icmp6_socket.ts";
import { encodeRa } from "../../src/pvd/ra_codec.ts";
import { svcParams } from "../../src/pvd/ra_dnr.ts";
import type { EncryptedDns, NdOption, PvdOption, RaHeader } from "../../src/pvd/ra_types.ts";
import { type RaDiscovery, startRaDiscovery } from "../../src/pvd/ra_discovery.ts";
import { InfoScheduler } from "../../src/pvd/info_scheduler.ts";
import { cidr } from "../../src/policy/prefixes.ts";
import { parseServer } from "../../src/config/parse.ts";
import type { PvdConfig } from "../../src/config/types.ts";
import { FakeClock, settle } from "../../testkit/fake_clock.ts";

// ---------------------------------------------------------------------------------------------
// RA builders

const HEADER: RaHeader = {
  type: 134,
  code: 0,
  checksum: 0,
  curHopLimit: 64,
  flags: 0,
  routerLifetime: 1800,
  reachableTime: 0,
  retransTimer: 0,
};

const pio = (prefix: string, valid = 86400): NdOption => ({
  kind: "pio",
  prefixLength: 64,
  flags: 0xc0,
  validLifetime: valid,
  preferredLifetime: Math.min(valid, 14400),
  reserved2: 0,
  prefix,
});
const rdnss = (servers: string[], lifetime = 1800): NdOption => ({
  kind: "rdnss",
  reserved: 0,
  lifetime,
  servers,
});
const dnssl = (domains: string[], lifetime = 1800): NdOption => ({
  kind: "dnssl",
  reserved: 0,
  lifetime,
  domains,
});
function pvdOption(id: string, o: Partial<PvdOption> = {}): PvdOption {
  return {
    kind: "pvd",
    h: true,
    l: false,
    r: o.raHeader !== undefined,
    reserved: 0,
    delay: 0,
    seq: 1,
    id,
    options: [],
    ...o,
  };
}
function ra(options: NdOption[], routerLifetime = 1800): Uint8Array {
  return encodeRa({ header: { ...HEADER, routerLifetime }, options });
}

/** An explicit PvD in the style of STANDARDS ex3: PIO, RDNSS, DNSSL inside the PvD option. */
function cafe(o: Partial<PvdOption> = {}, inner?: NdOption[], routerLifetime = 1800) {
  return ra([
    pvdOption("Cafe.Example.COM.", {
      options: inner ?? [
        pio("2001:db8:cafe::"),
        rdnss(["2001:db8:cafe::53"]),
        dnssl(["cafe.example.com.", "Example.com."]),
      ],
      ...o,
    }),
  ], routerLifetime);
}

// ---------------------------------------------------------------------------------------------
// The harness

class FakeSocket implements RaSocket {
  #queue: ReceivedPacket[] = [];
  #waiting?: (p: ReceivedPacket | null) => void;
  closed = false;
  constructor(readonly iface: string) {}
  get interface() {
    return this.iface;
  }
  push(p: ReceivedPacket) {
    if (this.#waiting) {
      const w = this.#waiting;
      this.#waiting = undefined;
      w(p);
    } else this.#queue.push(p);
  }
  receive(): Promise<ReceivedPacket | null> {
    if (this.closed) return Promise.resolve(null);
    const p = this.#queue.shift();
    if (p) return Promise.resolve(p);
    return new Promise((resolve) => this.#waiting = resolve);
  }
  close(): Promise<void> {
    this.closed = true;
    this.#waiting?.(null);
    this.#waiting = undefined;
    return Promise.resolve();
  }
}

interface Fetch {
  at: number;
  id: string;
  source: string | undefined;
  req: InfoFetchRequest;
}

interface HarnessOptions {
  fetch?: (req: InfoFetchRequest, n: number) => FetchOutcome | Promise<FetchOutcome>;
  random?: () => number;
  interfaces?: string[];
}

const T0 = Date.parse("2026-01-01T00:00:00Z");
const HOUR = 3_600_000;

/** A good document for `id`, valid for an hour from T0 unless said otherwise. */
function good(id: string, extra: Record<string, unknown> = {}): FetchOutcome {
  return {
    ok: true,
    document: {
      identifier: `${id}.`,
      expires: new Date(T0 + HOUR).toISOString(),
      prefixes: ["2001:db8:cafe::/48"],
      ...extra,
    },
    url: `https://${id}/.well-known/pvd`,
    source: "2001:db8:cafe::100",
  };
}

async function harness(o: HarnessOptions = {}) {
  const clock = new FakeClock(T0);
  const published: (readonly PvdConfig[])[] = [];
  const logs: string[] = [];
  const sockets = new Map<string, FakeSocket>();
  const indexes: Record<string, number> = { eth1: 7, eth2: 8 };
  const addresses: Record<string, unknown[]> = {
    eth1: [
      { family: "inet6", local: "2001:db8:cafe::100", prefixlen: 64, scope: "global" },
      {
        family: "inet6",
        local: "2001:db8:cafe::7e4",
        prefixlen: 64,
        scope: "global",
        temporary: true,
      },
      {
        family: "inet6",
        local: "2001:db8:cafe::bad",
        prefixlen: 64,
        scope: "global",
        tentative: true,
      },
      { family: "inet6", local: "2001:db8:beef::100", prefixlen: 64, scope: "global" },
      { family: "inet6", local: "fe80::aa", prefixlen: 64, scope: "link" },
      { family: "inet", local: "192.0.2.10", prefixlen: 24, scope: "global" },
    ],
    eth2: [{ family: "inet6", local: "2001:db8:2::100", prefixlen: 64, scope: "global" }],
  };
  const fetches: Fetch[] = [];
  const discovery: RaDiscovery = await startRaDiscovery({
    interfaces: o.interfaces ?? ["eth1"],
    publish: (p) => published.push(p),
    log: (l) => logs.push(l),
    now: clock.now,
    timers: clock,
    random: o.random ?? (() => 0.5),
    openSocket: (iface) => {
      if (!indexes[iface]) return Promise.reject(new Error(`no interface ${iface}`));
      const s = new FakeSocket(iface);
      sockets.set(iface, s);
      return Promise.resolve(s);
    },
    interfaceIndex: (iface) => indexes[iface] ?? 0,
    runIp: (args) => Promise.resolve([{ ifname: args[3], addr_info: addresses[args[3]!] ?? [] }]),
    fetcher: async (req) => {
      fetches.push({ at: clock.now() - T0, id: req.pvdId, source: req.sourceAddresses[0], req });
      return await (o.fetch ?? ((r) => good(r.pvdId)))(req, fetches.length);
    },
  });
  await settle();
  const h = {
    clock,
    published,
    logs,
    fetches,
    indexes,
    addresses,
    discovery,
    /** Delivers an RA and lets it be processed. */
    async send(
      payload: Uint8Array,
      p: Partial<Omit<ReceivedPacket, "payload">> = {},
    ): Promise<void> {
      const iface = p.interface ?? "eth1";
      sockets.get(iface)!.push({
        interface: iface,
        ifindex: indexes[iface] ?? 0,
        source: "fe80::1",
        hopLimit: 255,
        payload,
        ...p,
      });
      await clock.advance(0); // timers due now (a fetch due at once) fire
    },
    /** The last published set. */
    last(): readonly PvdConfig[] {
      return published.at(-1) ?? [];
    },
    pvd(id: string): PvdConfig | undefined {
      return h.last().find((p) => p.id === id);
    },
    async close() {
      await discovery.close();
    },
  };
  return h;
}

/** PvD `pI.example.com` with its own /64 (and a host address in it), RDNSS and lifetime. */
function numbered(h: { addresses: Record<string, unknown[]> }, i: number, lifetime = 1800) {
  const prefix = `2001:db8:cafe:${i + 1}::`;
  const local = `${prefix}100`;
  if (!h.addresses.eth1!.some((a) => (a as { local: string }).local === local)) {
    h.addresses.eth1!.push({ family: "inet6", local, prefixlen: 64, scope: "global" });
  }
  return ra([
    pvdOption(`p${i}.example.com`, {
      options: [rdnss([`${prefix}53`], lifetime), pio(prefix, lifetime)],
    }),
  ], lifetime);
}

// ---------------------------------------------------------------------------------------------
// Association and shape

Deno.test("ra discovery: an explicit PvD with its prefix, RDNSS, DNSSL and source addresses", async () => {
  const h = await harness({ fetch: () => ({ ok: false, kind: "network", message: "down" }) });
  try {
    await h.send(cafe({ h: false }));
    assert.deepEqual(h.last(), [{
      id: "cafe.example.com",
      implicit: false,
      origin: "ra",
      interface: "eth1",
      prefixes: [{
        text: "2001:db8:cafe::/64",
        family: 6,
        address: "2001:db8:cafe::",
        prefixLength: 64,
      }],
      // Inside the PIO, usable (not tentative); the stable address before the temporary one.
      sourceAddresses: ["2001:db8:cafe::100", "2001:db8:cafe::7e4"],
      servers: [{
        text: "2001:db8:cafe::53",
        protocol: "udp",
        address: "2001:db8:cafe::53",
        family: 6,
        port: 53,
      }],
      // DNSSL domains are zones too, marked as the network's (src/policy/zone_claims.ts judges them).
      dnsZones: ["cafe.example.com.", "example.com."],
      searchDomains: ["cafe.example.com.", "example.com."],
      zoneSources: { "cafe.example.com.": "dnssl", "example.com.": "dnssl" },
      default: true,
      priority: 0,
      strictRoutes: false,
    }]);
    assert.ok(Object.isFrozen(h.last()[0]!.servers[0]));
    assert.equal(h.fetches.length, 0, "H=0: never fetched");
  } finally {
    await h.close();
  }
});

Deno.test("ra discovery: an RA without PvD option makes an implicit PvD per (interface, router)", async () => {
  const h = await harness();
  try {
    await h.send(ra([pio("2001:db8:beef::"), rdnss(["fe80::53"])]), { source: "fe80::1" });
    await h.send(ra([rdnss(["2001:db8:beef::53"])]), { source: "fe80::2" });
    const a = h.pvd("ra:eth1:fe80::1")!;
    assert.equal(a.implicit, true);
    assert.deepEqual(a.servers, [{
      text: "fe80::53%eth1",
      protocol: "udp",
      address: "fe80::53",
      family: 6,
      port: 53,
      zone: "eth1",
    }]);
    // A link-local server brings the interface's link-local address, with its zone.
    assert.deepEqual(a.sourceAddresses, ["2001:db8:beef::100", "fe80::aa%eth1"]);
    const b = h.pvd("ra:eth1:fe80::2")!;
    assert.deepEqual(b.servers.map((s) => s.text), ["2001:db8:beef::53"]);
    assert.deepEqual(b.sourceAddresses, [], "no PIO: no prefix to find a source address in");
    assert.equal(h.fetches.length, 0, "implicit PvDs have no additional information");
  } finally {
    await h.close();
  }
});

Deno.test("ra discovery: RAs without hop limit 255, link-local source or the right interface are dropped", async () => {
  const h = await harness();
  try {
    await h.send(cafe(), { hopLimit: 64 });
    await h.send(cafe(), { source: "2001:db8:cafe::1" });
    await h.send(cafe(), { ifindex: 99 });
    await h.send(new Uint8Array([134, 0, 0, 0, 64]));
    assert.equal(h.published.length, 0);
    assert.ok(h.logs.some((l) => l.includes("hop limit 64, not 255")));
    assert.ok(h.logs.some((l) => l.includes("source is not link-local")));
    assert.ok(h.logs.some((l) => l.includes("interface index 99")));
    assert.ok(h.logs.some((l) => l.includes("rejected (truncated)")));
    await h.send(cafe());
    assert.equal(h.last().length, 1);
  } finally {
    await h.close();
  }
});

Deno.test("ra discovery: an inner RA header replaces the outer one (STANDARDS ex2)", async () => {
  const h = await harness();
  try {
    const header = { ...HEADER, routerLifetime: 1600 };
    await h.send(
      ra([
        pvdOption("bar.example.org.", {
          h: false,
          raHeader: header,
          options: [pio("2001:db8:f00d::"), rdnss(["2001:db8:f00d::53"])],
        }),
      ], 0),
    );
    const p = h.pvd("bar.example.org")!;
    assert.equal(p.default, true);
    await h.clock.advance(1600_000);
    assert.equal(h.pvd("bar.example.org")!.default, false, "router lifetime ran out");
  } finally {
    await h.close();
  }
});

Deno.test("ra discovery: options outside the PvD option belong to the PvD; a prefix moves to the PvD of the last RA carrying it", async () => {
  const h = await harness({ fetch: () => ({ ok: false, kind: "network", message: "down" }) });
  try {
    await h.send(ra([pio("2001:db8:cafe::"), rdnss(["2001:db8:cafe::53"])]), { source: "fe80::1" });
    assert.deepEqual(h.last().map((p) => p.id), ["ra:eth1:fe80::1"]);
    await h.send(
      ra([pio("2001:db8:cafe::"), pvdOption("cafe.example.com", { options: [dnssl(["x.test"])] })]),
      { source: "fe80::1" },
    );
    const implicit = h.pvd("ra:eth1:fe80::1")!;
    const explicit = h.pvd("cafe.example.com")!;
    assert.deepEqual(implicit.prefixes, [], "the PIO moved");
    assert.deepEqual(explicit.prefixes.map((c) => c.text), ["2001:db8:cafe::/64"]);
    assert.deepEqual(explicit.searchDomains, ["x.test."]);
    assert.deepEqual(implicit.servers.map((s) => s.text), ["2001:db8:cafe::53"]);
  } finally {
    await h.close();
  }
});

Deno.test("ra discovery: with several PvD options in one RA, all but the first are ignored", async () => {
  const h = await harness();
  try {
    await h.send(ra([
      pvdOption("first.example.com", { h: false, options: [rdnss(["2001:db8:cafe::1"])] }),
      pvdOption("second.example.com", { h: false, options: [rdnss(["2001:db8:cafe::2"])] }),
    ]));
    assert.deepEqual(h.last().map((p) => [p.id, p.servers.map((s) => s.text)]), [
      ["first.example.com", ["2001:db8:cafe::1"]],
    ]);
  } finally {
    await h.close();
  }
});

Deno.test("ra discovery: DNR resolvers become tls/https servers, best SvcPriority first, before RDNSS", async () => {
  const h = await harness();
  try {
    const dnr = (
      priority: number,
      alpn: string[],
      more: { port?: number; dohpath?: string },
      address: string,
    ) => {
      const p = { alpn, ...more };
      return {
        kind: "dnr",
        priority,
        lifetime: 1800,
        adn: "Resolver.Example.NET.",
        addresses: [address],
        svcParams: svcParams(p),
        ...p,
      } satisfies EncryptedDns;
    };
    await h.send(
      ra([
        rdnss(["2001:db8:cafe::53"]),
        dnr(2, ["dot"], {}, "2001:db8:cafe::854"),
        dnr(1, ["h2"], { port: 8443, dohpath: "/q{?dns}" }, "2001:db8:cafe::853"),
      ]),
    );
    const s = h.pvd("ra:eth1:fe80::1")!.servers;
    assert.deepEqual(s.map((x) => [x.protocol, x.address, x.port, x.authName, x.path]), [
      ["https", "2001:db8:cafe::853", 8443, "resolver.example.net", "/q"],
      ["tls", "2001:db8:cafe::854", 853, "resolver.example.net", undefined],
      ["udp", "2001:db8:cafe::53", 53, undefined, undefined],
    ]);
  } finally {
    await h.close();
  }
});

Deno.test("ra discovery: bounded: at most 32 PvDs per interface, 32 servers per PvD", async () => {
  const h = await harness();
  try {
    for (let i = 0; i < 34; i++) {
      await h.send(ra([rdnss([`2001:db8:cafe::${i + 1}`])]), { source: `fe80::${i + 1}` });
    }
    assert.equal(h.last().length, 32);
    assert.ok(h.logs.some((l) => l.includes("eth1 already has 32 PvDs")));
    for (let i = 0; i < 10; i++) {
      const servers = Array.from({ length: 4 }, (_, k) => `2001:db8:f00d::${i * 4 + k + 1}`);
      await h.send(ra([rdnss(servers)]), { source: "fe80::1" });
    }
    assert.equal(h.pvd("ra:eth1:fe80::1")!.servers.length, 32);
  } finally {
    await h.close();
  }
});

// ---------------------------------------------------------------------------------------------
// Lifetimes

Deno.test("ra discovery: lifetimes run out element by element, then the PvD goes", async () => {
  const h = await harness({ fetch: () => ({ ok: false, kind: "network", message: "down" }) });
  try {
    await h.send(cafe({ h: false }, [
      pio("2001:db8:cafe::", 3000),
      rdnss(["2001:db8:cafe::53"], 600),
      dnssl(["cafe.example.com."], 1200),
    ], 1800));
    assert.equal(h.last()[0]!.servers.length, 1);
    await h.clock.advance(600_000);
    assert.deepEqual(h.last()[0]!.servers, [], "RDNSS lifetime ran out");
    await h.clock.advance(600_000);
    assert.deepEqual(h.last()[0]!.searchDomains, [], "DNSSL lifetime ran out");
    await h.clock.advance(600_000);
    assert.equal(h.last()[0]!.default, false, "router lifetime ran out");
    await h.clock.advance(1_200_000);
    assert.deepEqual(h.last(), [], "nothing left: the PvD is gone");
  } finally {
    await h.close();
  }
});

Deno.test("ra discovery: a lifetime of 0 removes at once; router lifetime 0 with nothing left removes the PvD", async () => {
  const h = await harness({ fetch: () => ({ ok: false, kind: "network", message: "down" }) });
  try {
    await h.send(cafe({ h: false }));
    await h.send(cafe({ h: false }, [rdnss(["2001:db8:cafe::53"], 0)]));
    assert.deepEqual(h.last()[0]!.servers, []);
    assert.deepEqual(h.last()[0]!.searchDomains, ["cafe.example.com.", "example.com."]);
    await h.send(
      cafe({ h: false }, [
        pio("2001:db8:cafe::", 0),
        dnssl(["cafe.example.com.", "example.com."], 0),
      ], 0),
    );
    assert.deepEqual(h.last(), []);
    // Refreshing an element pushes its expiry back.
    await h.send(cafe({ h: false }));
    await h.clock.advance(1000_000);
    await h.send(cafe({ h: false }));
    await h.clock.advance(1000_000);
    assert.equal(h.last()[0]!.servers.length, 1, "refreshed at 1000 s, so alive at 2000 s");
  } finally {
    await h.close();
  }
});

Deno.test("ra discovery: an interface that goes away takes its PvDs with it", async () => {
  const h = await harness();
  try {
    await h.send(ra([rdnss(["2001:db8:cafe::53"])]));
    assert.equal(h.last().length, 1);
    h.indexes.eth1 = 0;
    await h.clock.advance(5000);
    assert.deepEqual(h.last(), []);
    assert.ok(h.logs.some((l) => l.includes("eth1: interface gone")));
  } finally {
    await h.close();
  }
});

// ---------------------------------------------------------------------------------------------
// Additional information (RFC 8801 §4.1)

Deno.test("ra discovery: H=1 fetches at once from a temporary address; dnsZones and noInternet are used", async () => {
  const h = await harness({
    fetch: (r) =>
      good(r.pvdId, {
        dnsZones: ["Corp.Example.", "_srv.example.com"],
        noInternet: true,
        "vendor-x": {},
      }),
  });
  try {
    await h.send(cafe());
    assert.equal(h.fetches.length, 1);
    assert.equal(h.fetches[0]!.at, 0);
    assert.equal(h.fetches[0]!.id, "cafe.example.com");
    assert.equal(h.fetches[0]!.source, "2001:db8:cafe::7e4", "the temporary address first");
    assert.deepEqual(h.fetches[0]!.req.servers.map((s) => s.text), ["2001:db8:cafe::53"]);
    const p = h.pvd("cafe.example.com")!;
    // The information's zones first, then the DNSSL domains, each with its source.
    assert.deepEqual(p.dnsZones, [
      "corp.example.",
      "_srv.example.com.",
      "cafe.example.com.",
      "example.com.",
    ]);
    assert.deepEqual(p.zoneSources, {
      "corp.example.": "pvd-info",
      "_srv.example.com.": "pvd-info",
      "cafe.example.com.": "dnssl",
      "example.com.": "dnssl",
    });
    assert.equal(p.default, false, "noInternet: not a default");
    assert.equal(p.additionalInfo!.identifier, "cafe.example.com");
    assert.equal(p.additionalInfo!.fetchedAt, new Date(T0).toISOString());
  } finally {
    await h.close();
  }
});

Deno.test("ra discovery: H=0 never fetches; H going to 0 drops the information", async () => {
  const h = await harness();
  try {
    await h.send(cafe());
    assert.ok(h.pvd("cafe.example.com")!.additionalInfo);
    await h.send(cafe({ h: false, seq: 2 }));
    assert.equal(h.pvd("cafe.example.com")!.additionalInfo, undefined);
    await h.clock.advance(HOUR);
    assert.equal(h.fetches.length, 1);
  } finally {
    await h.close();
  }
});

Deno.test("ra discovery: a new sequence number drops the information and refetches after random [0, 2^(10+Delay)] ms", async () => {
  const h = await harness({ random: () => 0.75 });
  try {
    await h.send(cafe({ seq: 7, delay: 1 }));
    await h.clock.advance(60_000);
    await h.send(cafe({ seq: 7, delay: 1 }));
    assert.equal(h.fetches.length, 1, "same sequence number: no refetch");
    await h.send(cafe({ seq: 8, delay: 1 }));
    assert.equal(h.pvd("cafe.example.com")!.additionalInfo, undefined, "deprecated at once");
    await h.clock.advance(1535);
    assert.equal(h.fetches.length, 1);
    await h.clock.advance(1);
    assert.equal(h.fetches.length, 2, "0.75 × 2^11 = 1536 ms later");
    assert.equal(h.fetches[1]!.at, 61_536);
    assert.ok(h.pvd("cafe.example.com")!.additionalInfo);
  } finally {
    await h.close();
  }
});

Deno.test("ra discovery: refresh at a random time in [midpoint(fetch, expires), expires]; expired information is dropped", async () => {
  let n = 0;
  const h = await harness({
    random: () => [0, 1][n++ % 2]!,
    fetch: (r, k) =>
      k === 1 ? good(r.pvdId) : { ok: false, kind: "network", message: "unreachable" },
  });
  try {
    await h.send(cafe({ seq: 1 }, undefined, 9000));
    assert.equal(h.fetches.length, 1);
    // random() = 0 → the midpoint: 30 min after the fetch, for an object valid one hour.
    await h.clock.advance(HOUR / 2 - 1);
    assert.equal(h.fetches.length, 1);
    await h.clock.advance(1);
    assert.equal(h.fetches.length, 2);
    assert.ok(h.pvd("cafe.example.com")!.additionalInfo, "still valid while the refresh fails");
    await h.clock.advance(HOUR / 2);
    assert.equal(h.pvd("cafe.example.com")!.additionalInfo, undefined, "expired");
    assert.ok(h.logs.some((l) => l.includes("dropped (expired)")));
  } finally {
    await h.close();
  }
});

Deno.test("info scheduler: an object valid for a year is refreshed after half a year, not at once", async () => {
  const YEAR = 365 * 24 * HOUR;
  const clock = new FakeClock(T0);
  const fetched: number[] = [];
  const scheduler = new InfoScheduler({
    fetcher: (r) => {
      fetched.push(clock.now() - T0);
      return Promise.resolve(good(r.pvdId, { expires: new Date(T0 + YEAR).toISOString() }));
    },
    onChange: () => {},
    now: clock.now,
    timers: clock,
    random: () => 0,
    log: () => {},
  });
  try {
    scheduler.update({
      interface: "eth1",
      id: "cafe.example.com",
      h: true,
      delay: 0,
      seq: 1,
      fetchSources: ["2001:db8:cafe::100"],
      sourceAddresses: ["2001:db8:cafe::100"],
      servers: [parseServer("2001:db8:cafe::53")],
      prefixes: [cidr("2001:db8:cafe::/64")],
    });
    await clock.advance(0);
    assert.deepEqual(fetched, [0]);
    // Past 2^31 ms (24.8 days): the timers are chained, never fired early.
    await clock.advance(60 * 24 * HOUR);
    assert.deepEqual(fetched, [0]);
    assert.ok(scheduler.info("eth1", "cafe.example.com"));
    await clock.advance(YEAR / 2 - 60 * 24 * HOUR);
    assert.deepEqual(fetched, [0, YEAR / 2], "refreshed at the midpoint (random() = 0)");
  } finally {
    await scheduler.close();
  }
});

Deno.test("ra discovery: at least 10 s between fetches of one PvD", async () => {
  const h = await harness({ random: () => 0 });
  try {
    await h.send(cafe({ seq: 1 }));
    await h.clock.advance(2000);
    await h.send(cafe({ seq: 2 }));
    await h.clock.advance(2000);
    await h.send(cafe({ seq: 3 }));
    await h.clock.advance(20_000);
    assert.deepEqual(h.fetches.map((f) => f.at), [0, 10_000]);
  } finally {
    await h.close();
  }
});

Deno.test("ra discovery: at most 5 fetches per network in 10 s", async () => {
  const h = await harness({
    fetch: (r) => good(r.pvdId),
  });
  try {
    for (let i = 0; i < 7; i++) await h.send(numbered(h, i), { source: `fe80::${i + 1}` });
    await h.clock.advance(30_000);
    const times = h.fetches.map((f) => f.at);
    assert.deepEqual(times, [0, 0, 0, 0, 0, 10_000, 10_000]);
  } finally {
    await h.close();
  }
});

Deno.test("ra discovery: after a TLS/HTTP/JSON failure the PvD ID is not fetched again this attachment", async (t) => {
  for (const kind of ["tls", "http", "json"] as const) {
    await t.step(kind, async () => {
      const h = await harness({ fetch: () => ({ ok: false, kind, message: "no" }) });
      try {
        await h.send(cafe({ seq: 1 }));
        await h.clock.advance(60_000);
        await h.send(cafe({ seq: 2 }));
        await h.clock.advance(1000_000);
        await h.send(cafe({ seq: 3 }));
        await h.clock.advance(60_000);
        assert.equal(h.fetches.length, 1);
        const p = h.pvd("cafe.example.com")!;
        assert.equal(p.additionalInfo, undefined);
        assert.equal(p.servers.length, 1, "the PvD stays usable without its information");
      } finally {
        await h.close();
      }
    });
  }
  await t.step("an invalid object counts as a JSON failure", async () => {
    const h = await harness({ fetch: (r) => good(r.pvdId, { prefixes: ["2001:db8:f00d::/48"] }) });
    try {
      await h.send(cafe({ seq: 1 }));
      await h.send(cafe({ seq: 2 }));
      await h.clock.advance(HOUR);
      assert.equal(h.fetches.length, 1);
      assert.equal(h.pvd("cafe.example.com")!.additionalInfo, undefined);
      assert.ok(h.logs.some((l) => l.includes("do not cover")), h.logs.join("\n"));
    } finally {
      await h.close();
    }
  });
});

Deno.test("ra discovery: DNS and connection failures are retried after 10 s, 20 s, 40 s", async () => {
  const h = await harness({ fetch: () => ({ ok: false, kind: "dns", message: "no answer" }) });
  try {
    await h.send(cafe());
    await h.clock.advance(75_000);
    assert.deepEqual(h.fetches.map((f) => f.at), [0, 10_000, 30_000, 70_000]);
  } finally {
    await h.close();
  }
});

Deno.test("ra discovery: after 10 failures nothing more is fetched on the network; a new attachment starts afresh", async () => {
  const h = await harness({ fetch: () => ({ ok: false, kind: "http", message: "HTTP 404" }) });
  try {
    for (let i = 0; i < 11; i++) {
      await h.send(numbered(h, i));
      await h.clock.advance(10_000);
    }
    assert.equal(h.fetches.length, 10, "the 11th PvD is never fetched");
    assert.ok(h.logs.some((l) => l.includes("10 failed fetches on eth1")));
    assert.equal(h.last().length, 11, "every PvD is still there, without information");
    // Every PvD goes (router lifetime 0, elements with lifetime 0): the attachment ends.
    for (let i = 0; i < 11; i++) await h.send(numbered(h, i, 0));
    assert.deepEqual(h.last(), []);
    await h.send(numbered(h, 0));
    assert.equal(h.fetches.length, 11, "fetched again in the new attachment");
  } finally {
    await h.close();
  }
});

Deno.test("ra discovery: no fetch before the PvD has a source address; it starts when one appears", async () => {
  const h = await harness();
  try {
    h.addresses.eth1 = [];
    await h.send(cafe());
    await h.clock.advance(5000);
    assert.equal(h.fetches.length, 0);
    assert.deepEqual(h.pvd("cafe.example.com")!.sourceAddresses, []);
    h.addresses.eth1 = [{
      family: "inet6",
      local: "2001:db8:cafe::100",
      prefixlen: 64,
      scope: "global",
    }];
    await h.clock.advance(5000); // the 10 s address refresh
    assert.equal(h.fetches.length, 1);
    assert.equal(h.fetches[0]!.source, "2001:db8:cafe::100");
    assert.ok(h.pvd("cafe.example.com")!.additionalInfo);
  } finally {
    await h.close();
  }
});

Deno.test("ra discovery: information whose prefixes stop covering a new PIO is not used", async () => {
  const h = await harness();
  try {
    await h.send(cafe());
    assert.ok(h.pvd("cafe.example.com")!.additionalInfo);
    await h.send(cafe({}, [pio("2001:db8:beef::"), rdnss(["2001:db8:cafe::53"])]));
    assert.equal(h.pvd("cafe.example.com")!.additionalInfo, undefined);
    // Only the DNSSL domains are left: none of the information's zones.
    const p = h.pvd("cafe.example.com")!;
    assert.deepEqual(p.dnsZones, p.searchDomains);
    assert.ok(Object.values(p.zoneSources ?? {}).every((s) => s === "dnssl"));
  } finally {
    await h.close();
  }
});

Deno.test("ra discovery: close stops everything; nothing is published afterwards", async () => {
  const h = await harness();
  await h.send(cafe());
  const count = h.published.length;
  await h.close();
  await h.clock.advance(HOUR * 3);
  assert.equal(h.published.length, count);
  assert.equal(h.clock.pending, 0, "no timer left behind");
});

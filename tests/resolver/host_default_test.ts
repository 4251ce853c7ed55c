import assert from "node:assert/strict";
import { ConfigError } from "../../resolver/config.ts";
import {
  buildHostDefault,
  type HostDeps,
  parseResolvConf,
  RESOLV_CONF,
  RESOLVED_RESOLV_CONF,
} from "../../resolver/host_default.ts";

// `ip -j …` output recorded on a test machine (eth0 = 192.0.2.2/24 + fd00::2/64).
const IP_OUTPUT: Record<string, unknown> = {
  "route get 192.0.2.1": [
    { dst: "192.0.2.1", dev: "eth0", prefsrc: "192.0.2.2", flags: [], uid: 0, cache: [] },
  ],
  "route get 192.0.2.3": [
    { dst: "192.0.2.3", dev: "eth0", prefsrc: "192.0.2.2", flags: [], uid: 0, cache: [] },
  ],
  "route get 192.0.2.2": [{
    type: "local",
    dst: "192.0.2.2",
    dev: "lo",
    prefsrc: "192.0.2.2",
    flags: [],
    uid: 0,
    cache: ["local"],
  }],
  "route get fd00::1": [{
    dst: "fd00::1",
    from: "::",
    dev: "eth0",
    protocol: "kernel",
    prefsrc: "fd00::2",
    metric: 256,
    flags: [],
    pref: "medium",
  }],
  "route get 127.0.0.1": [{
    type: "local",
    dst: "127.0.0.1",
    dev: "lo",
    prefsrc: "127.0.0.1",
    flags: [],
    uid: 0,
    cache: ["local"],
  }],
  "addr show dev eth0": [{
    ifindex: 4,
    ifname: "eth0",
    flags: ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"],
    mtu: 1400,
    qdisc: "pfifo_fast",
    operstate: "UP",
    group: "default",
    txqlen: 1000,
    link_type: "ether",
    address: "02:fc:00:00:00:01",
    broadcast: "ff:ff:ff:ff:ff:ff",
    addr_info: [
      {
        family: "inet",
        local: "192.0.2.2",
        prefixlen: 24,
        broadcast: "192.0.2.255",
        scope: "global",
        label: "eth0",
        valid_life_time: 4294967295,
        preferred_life_time: 4294967295,
      },
      {
        family: "inet6",
        local: "fd00::2",
        prefixlen: 64,
        scope: "global",
        nodad: true,
        valid_life_time: 4294967295,
        preferred_life_time: 4294967295,
      },
      {
        family: "inet6",
        local: "fe80::fc:ff:fe00:1",
        prefixlen: 64,
        scope: "link",
        valid_life_time: 4294967295,
        preferred_life_time: 4294967295,
      },
    ],
  }],
  "addr show dev lo": [{
    ifindex: 1,
    ifname: "lo",
    flags: ["LOOPBACK", "UP", "LOWER_UP"],
    mtu: 65536,
    qdisc: "noqueue",
    operstate: "UNKNOWN",
    group: "default",
    txqlen: 1000,
    link_type: "loopback",
    address: "00:00:00:00:00:00",
    broadcast: "00:00:00:00:00:00",
    addr_info: [
      {
        family: "inet",
        local: "127.0.0.1",
        prefixlen: 8,
        scope: "host",
        label: "lo",
        valid_life_time: 4294967295,
        preferred_life_time: 4294967295,
      },
      {
        family: "inet6",
        local: "::1",
        prefixlen: 128,
        scope: "host",
        valid_life_time: 4294967295,
        preferred_life_time: 4294967295,
      },
    ],
  }],
};

/** Fake host: files by path, `ip` answers from `ip` (default IP_OUTPUT); records what was asked. */
function fakeHost(files: Record<string, string>, ip: Record<string, unknown> = IP_OUTPUT) {
  const reads: string[] = [];
  const ipCalls: string[] = [];
  const deps: HostDeps = {
    readFile: (path) => {
      reads.push(path);
      const text = files[path];
      return text === undefined
        ? Promise.reject(new Deno.errors.NotFound(`No such file or directory: ${path}`))
        : Promise.resolve(text);
    },
    runIp: (args) => {
      const key = args.join(" ");
      ipCalls.push(key);
      return key in ip
        ? Promise.resolve(structuredClone(ip[key]))
        : Promise.reject(new Error(`ip -j ${key}: RTNETLINK answers: Network is unreachable`));
    },
  };
  return { deps, reads, ipCalls };
}

async function configErrors(promise: Promise<unknown>): Promise<readonly string[]> {
  const error = await promise.then(() => undefined, (e: unknown) => e);
  assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${error}`);
  return error.errors;
}

Deno.test("buildHostDefault() makes one implicit PvD per interface from resolv.conf", async () => {
  const { deps, ipCalls } = fakeHost({
    [RESOLV_CONF]: "# generated\nnameserver 192.0.2.1\nsearch Example.NET lab.example\n",
  });
  const config = await buildHostDefault(deps);
  assert.deepEqual(config.pvds, [{
    id: "implicit:eth0",
    implicit: true,
    origin: "host",
    interface: "eth0",
    prefixes: [
      { text: "192.0.2.0/24", family: 4, address: "192.0.2.0", prefixLength: 24 },
      { text: "fd00::/64", family: 6, address: "fd00::", prefixLength: 64 },
    ],
    sourceAddresses: ["192.0.2.2", "fd00::2"],
    servers: [{ text: "192.0.2.1", protocol: "udp", address: "192.0.2.1", family: 4, port: 53 }],
    dnsZones: [],
    searchDomains: ["example.net.", "lab.example."],
    default: true,
    priority: 100,
    strictRoutes: false,
  }]);
  assert.deepEqual(config.listen, [{ text: "127.0.0.53:53", address: "127.0.0.53", port: 53 }]);
  assert.deepEqual(config.discovery, { ra: [], host: true });
  assert.deepEqual(config.rules, []);
  assert.ok(Object.isFrozen(config.pvds[0]!.servers[0]));
  assert.deepEqual(ipCalls, ["route get 192.0.2.1", "addr show dev eth0"]);
});

Deno.test("buildHostDefault() groups servers by interface; the first server's PvD leads", async () => {
  const { deps } = fakeHost({
    [RESOLV_CONF]: "nameserver 192.0.2.1\nnameserver 127.0.0.1\nnameserver fd00::1\n" +
      "nameserver 192.0.2.3\nnameserver 192.0.2.1\n",
  });
  const config = await buildHostDefault(deps);
  assert.deepEqual(
    config.pvds.map((p) => ({
      id: p.id,
      servers: p.servers.map((s) => s.text),
      sourceAddresses: p.sourceAddresses,
      prefixes: p.prefixes.map((c) => c.text),
      default: p.default,
      priority: p.priority,
    })),
    [
      {
        id: "implicit:eth0",
        servers: ["192.0.2.1", "fd00::1", "192.0.2.3"],
        sourceAddresses: ["192.0.2.2", "fd00::2"],
        prefixes: ["192.0.2.0/24", "fd00::/64"],
        default: true,
        priority: 100,
      },
      {
        // Loopback: host-scope sources, and no prefixes (local clients are not "in" this PvD).
        id: "implicit:lo",
        servers: ["127.0.0.1"],
        sourceAddresses: ["127.0.0.1", "::1"],
        prefixes: [],
        default: true,
        priority: 0,
      },
    ],
  );
});

Deno.test("buildHostDefault() follows systemd-resolved's stub to its upstream list", async () => {
  const { deps, reads } = fakeHost({
    [RESOLV_CONF]: "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n",
    [RESOLVED_RESOLV_CONF]: "nameserver 192.0.2.1\nsearch example.net\n",
  });
  const config = await buildHostDefault(deps);
  assert.deepEqual(reads, [RESOLV_CONF, RESOLVED_RESOLV_CONF]);
  assert.deepEqual(config.pvds.map((p) => [p.id, p.servers[0]!.text, p.searchDomains]), [
    ["implicit:eth0", "192.0.2.1", ["example.net."]],
  ]);
});

Deno.test("buildHostDefault() never forwards to its own listen addresses", async (t) => {
  await t.step("127.0.0.53 and a given listen address are dropped before routing", async () => {
    const { deps, ipCalls } = fakeHost({
      [RESOLV_CONF]: "nameserver 127.0.0.53\nnameserver 127.0.0.1\nnameserver 192.0.2.1\n",
    });
    const config = await buildHostDefault({ ...deps, listenAddresses: ["127.0.0.1:53"] });
    assert.deepEqual(config.listen.map((l) => l.text), ["127.0.0.1:53"]);
    assert.deepEqual(config.pvds.map((p) => p.id), ["implicit:eth0"]);
    assert.deepEqual(ipCalls, ["route get 192.0.2.1", "addr show dev eth0"]);
  });
  await t.step("a listen address on another port is no loop", async () => {
    const { deps } = fakeHost({ [RESOLV_CONF]: "nameserver 127.0.0.1\n" });
    const config = await buildHostDefault({ ...deps, listenAddresses: ["127.0.0.1:5353"] });
    assert.deepEqual(config.pvds.map((p) => p.id), ["implicit:lo"]);
  });
  await t.step("with a wildcard listener, local addresses are dropped", async () => {
    const { deps } = fakeHost({ [RESOLV_CONF]: "nameserver 192.0.2.2\nnameserver 192.0.2.1\n" });
    const config = await buildHostDefault({ ...deps, listenAddresses: ["0.0.0.0:53"] });
    assert.deepEqual(config.pvds.map((p) => p.servers.map((s) => s.text)), [["192.0.2.1"]]);
  });
});

Deno.test("buildHostDefault() skips servers it cannot use", async (t) => {
  await t.step("a family without a source address on the interface", async () => {
    // eth0 without its global IPv6 address: the route to fd00::1 then prefers the link-local one.
    const v4only = structuredClone(IP_OUTPUT) as Record<string, Record<string, unknown>[]>;
    (v4only["addr show dev eth0"]![0]!.addr_info as unknown[]).splice(1, 1);
    v4only["route get fd00::1"]![0]!.prefsrc = "fe80::fc:ff:fe00:1";
    const { deps } = fakeHost(
      { [RESOLV_CONF]: "nameserver fd00::1\nnameserver 192.0.2.1\n" },
      v4only,
    );
    const config = await buildHostDefault(deps);
    assert.deepEqual(config.pvds[0]!.servers.map((s) => s.text), ["192.0.2.1"]);
    assert.deepEqual(config.pvds[0]!.sourceAddresses, ["192.0.2.2"]);
  });
  await t.step("no usable server at all is a ConfigError that says why", async () => {
    const { deps } = fakeHost({
      [RESOLV_CONF]: "nameserver 127.0.0.53\nnameserver 203.0.113.1\nnameserver 1.2.3\n",
    });
    const errors = await configErrors(buildHostDefault(deps));
    assert.match(
      errors[0]!,
      /^no usable DNS server for the embedded default config in \/etc\/resolv\.conf/,
    );
    assert.match(errors[0]!, /--config FILE/);
    assert.deepEqual(errors.slice(1), [
      "/etc/resolv.conf: nameserver 127.0.0.53: it is pvdns's own listen address",
      "/etc/resolv.conf: nameserver 203.0.113.1: no route: " +
      "ip -j route get 203.0.113.1: RTNETLINK answers: Network is unreachable",
      '/etc/resolv.conf: nameserver 1.2.3: "1.2.3" is not an IP address',
    ]);
  });
  await t.step("only the systemd-resolved stub, and no resolved upstream list", async () => {
    const { deps } = fakeHost({ [RESOLV_CONF]: "nameserver 127.0.0.53\n" });
    const errors = await configErrors(buildHostDefault(deps));
    assert.match(errors.join("\n"), /no usable DNS server.*\n.*127\.0\.0\.53: it is pvdns's own/);
  });
  await t.step("no resolv.conf", async () => {
    const { deps } = fakeHost({});
    const errors = await configErrors(buildHostDefault(deps));
    assert.match(errors[0]!, /^\/etc\/resolv\.conf: cannot read it: .*No such file/);
  });
});

Deno.test("parseResolvConf() reads nameserver and search lines", () => {
  assert.deepEqual(
    parseResolvConf(
      "; comment\n# nameserver 192.0.2.99\n  nameserver\t192.0.2.1  \nnameserver fe80::1%eth0\n" +
        "domain a.example\nsearch b.example c.example\noptions ndots:2\n",
    ),
    { nameservers: ["192.0.2.1", "fe80::1%eth0"], search: ["b.example", "c.example"] },
  );
  assert.deepEqual(parseResolvConf("search a.example\ndomain d.example\n").search, ["d.example"]);
});

Deno.test("buildHostDefault() reads the real routing table for a loopback server", async () => {
  // Only `ip route get` / `ip addr show` run; no DNS query is sent anywhere.
  const config = await buildHostDefault({
    readFile: (path) =>
      path === RESOLV_CONF
        ? Promise.resolve("nameserver 127.0.0.1\n")
        : Promise.reject(new Error(path)),
  });
  const pvd = config.pvds[0]!;
  assert.equal(config.pvds.length, 1);
  assert.equal(pvd.id, "implicit:lo");
  assert.equal(pvd.interface, "lo");
  assert.equal(pvd.origin, "host");
  assert.deepEqual(pvd.servers.map((s) => s.text), ["127.0.0.1"]);
  assert.equal(pvd.sourceAddresses[0], "127.0.0.1");
});

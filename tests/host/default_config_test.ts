import assert from "node:assert/strict";
import { ConfigError } from "../../src/config/parse.ts";
import type { Config } from "../../src/config/types.ts";
import { buildHostDefault, type HostDeps } from "../../src/host/default_config.ts";
import { parseResolvConf, RESOLV_CONF, RESOLVED_RESOLV_CONF } from "../../src/host/resolv_conf.ts";

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

/**
 * Fake host: files by path, `ip` answers from `ip` (default IP_OUTPUT), `resolvectl`/`nmcli` from
 * `commands` ("COMMAND ARGS…" → stdout or an Error; others are not installed); records what was
 * asked.
 */
function fakeHost(
  files: Record<string, string>,
  ip: Record<string, unknown> = IP_OUTPUT,
  commands: Record<string, string | Error> = {},
) {
  const reads: string[] = [];
  const ipCalls: string[] = [];
  const commandCalls: string[] = [];
  const deps: HostDeps = {
    runCommand: (command, args) => {
      const key = [command, ...args].join(" ");
      commandCalls.push(key);
      const out = commands[key];
      if (out instanceof Error) return Promise.reject(out);
      return out !== undefined ? Promise.resolve(out) : Promise.reject(
        new Deno.errors.NotFound(`Failed to spawn '${command}': No such file or directory`),
      );
    },
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
  return { deps, reads, ipCalls, commandCalls };
}

async function configErrors(promise: Promise<unknown>): Promise<readonly string[]> {
  const error = await promise.then(() => undefined, (e: unknown) => e);
  assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${error}`);
  return error.errors;
}

/** Listeners off loopback need an allow list, as in any config. */
const LAN = ["192.168.0.0/16"];

Deno.test("buildHostDefault() makes one implicit PvD per interface from resolv.conf", async () => {
  const { deps, ipCalls, commandCalls } = fakeHost({
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
  // Neither systemd-resolved nor NetworkManager is installed on this fake host.
  assert.deepEqual(commandCalls, [...RESOLVECTL, NMCLI]);
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
  await t.step("a listener off loopback without an allow list is refused", async () => {
    const { deps } = fakeHost({ [RESOLV_CONF]: "nameserver 192.0.2.1\n" });
    await assert.rejects(
      buildHostDefault({ ...deps, listenAddresses: ["0.0.0.0:53"] }),
      /embedded default config: allow: required/,
    );
  });
  await t.step("with a wildcard listener, local addresses are dropped", async () => {
    const { deps } = fakeHost({ [RESOLV_CONF]: "nameserver 192.0.2.2\nnameserver 192.0.2.1\n" });
    const config = await buildHostDefault({ ...deps, listenAddresses: ["0.0.0.0:53"], allow: LAN });
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
  // Only `ip route get` / `ip addr show` run; no DNS query is sent anywhere. No resolvectl or
  // nmcli either: this test is about resolv.conf, whatever the machine runs.
  const config = await buildHostDefault({
    runCommand: (command) => Promise.reject(new Deno.errors.NotFound(command)),
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

// ---------------------------------------------------------------------------------------------
// Per-link DNS configuration: systemd-resolved, then NetworkManager, then resolv.conf.

const RESOLVECTL = ["dns", "domain", "default-route", "dnsovertls"].map((verb) =>
  `resolvectl --no-pager ${verb}`
);
const NMCLI = "nmcli -t -f GENERAL.DEVICE,IP4.DNS,IP6.DNS,IP4.DOMAIN,IP6.DOMAIN device show";

const fixture = (name: string) => Deno.readTextFile(new URL(`./fixtures/${name}`, import.meta.url));

/** The laptop of tests/host/fixtures/README.md, as systemd-resolved reports it. */
async function resolvedLaptop(): Promise<Record<string, string>> {
  const files = await Promise.all(
    ["dns", "domain", "default_route", "dnsovertls"].map((f) =>
      fixture(`resolvectl_${f}_laptop.txt`)
    ),
  );
  return Object.fromEntries(RESOLVECTL.map((key, i) => [key, files[i]!]));
}

/** `ip -j` on the laptop: Wi-Fi wlp2s0 (index 3), WireGuard wg0 (index 5), default via Wi-Fi. */
const LAPTOP_IP: Record<string, unknown> = {
  "addr show dev wlp2s0": [{
    ifindex: 3,
    ifname: "wlp2s0",
    flags: ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"],
    mtu: 1500,
    operstate: "UP",
    link_type: "ether",
    address: "3c:22:fb:00:00:23",
    addr_info: [
      {
        family: "inet",
        local: "192.168.1.23",
        prefixlen: 24,
        broadcast: "192.168.1.255",
        scope: "global",
        dynamic: true,
        noprefixroute: true,
        label: "wlp2s0",
        valid_life_time: 85000,
        preferred_life_time: 85000,
      },
      {
        family: "inet6",
        local: "2001:db8:1::23",
        prefixlen: 64,
        scope: "global",
        dynamic: true,
        mngtmpaddr: true,
        noprefixroute: true,
        valid_life_time: 86000,
        preferred_life_time: 14000,
      },
      {
        family: "inet6",
        local: "fe80::3e22:fbff:fe00:23",
        prefixlen: 64,
        scope: "link",
        noprefixroute: true,
        valid_life_time: 4294967295,
        preferred_life_time: 4294967295,
      },
    ],
  }],
  "addr show dev wg0": [{
    ifindex: 5,
    ifname: "wg0",
    flags: ["POINTOPOINT", "NOARP", "UP", "LOWER_UP"],
    mtu: 1420,
    operstate: "UNKNOWN",
    link_type: "none",
    addr_info: [
      {
        family: "inet",
        local: "10.8.0.2",
        prefixlen: 24,
        scope: "global",
        label: "wg0",
        valid_life_time: 4294967295,
        preferred_life_time: 4294967295,
      },
      {
        family: "inet6",
        local: "fd00:8::2",
        prefixlen: 64,
        scope: "global",
        valid_life_time: 4294967295,
        preferred_life_time: 4294967295,
      },
    ],
  }],
  "route show default": [
    { dst: "default", gateway: "192.168.1.1", dev: "wlp2s0", protocol: "dhcp", metric: 600 },
  ],
  "route get 192.0.2.53": [{ dst: "192.0.2.53", dev: "wlp2s0", prefsrc: "192.168.1.23" }],
  "route get 2001:db8:53::1": [{ dst: "2001:db8:53::1", dev: "wlp2s0", prefsrc: "2001:db8:1::23" }],
};

const summary = (config: Config) =>
  config.pvds.map((p) => ({
    id: p.id,
    servers: p.servers.map((s) => s.text),
    dnsZones: p.dnsZones,
    searchDomains: p.searchDomains,
    default: p.default,
    priority: p.priority,
  }));

Deno.test("buildHostDefault() makes one PvD per systemd-resolved link: the VPN claims its zones, the ~. Wi-Fi is the default", async () => {
  const { deps, reads, ipCalls } = fakeHost({}, LAPTOP_IP, await resolvedLaptop());
  const config = await buildHostDefault(deps);
  assert.deepEqual(config.pvds, [
    {
      id: "implicit:wlp2s0",
      implicit: true,
      origin: "host",
      interface: "wlp2s0",
      prefixes: [
        { text: "192.168.1.0/24", family: 4, address: "192.168.1.0", prefixLength: 24 },
        { text: "2001:db8:1::/64", family: 6, address: "2001:db8:1::", prefixLength: 64 },
      ],
      sourceAddresses: ["192.168.1.23", "2001:db8:1::23"],
      servers: [
        { text: "192.168.1.1", protocol: "udp", address: "192.168.1.1", family: 4, port: 53 },
        { text: "2001:db8:1::1", protocol: "udp", address: "2001:db8:1::1", family: 6, port: 53 },
        {
          // resolved lists link servers without a zone: the link is the zone.
          text: "fe80::1%wlp2s0",
          protocol: "udp",
          address: "fe80::1",
          family: 6,
          port: 53,
          zone: "wlp2s0",
        },
      ],
      dnsZones: ["home.example."],
      searchDomains: ["home.example."],
      default: true,
      priority: 100,
      strictRoutes: false,
      // resolved's ~.: the link asks for every name (src/policy/zone_claims.ts), "." is no zone.
      rootRoutingDomain: true,
    },
    {
      id: "implicit:wg0",
      implicit: true,
      origin: "host",
      interface: "wg0",
      prefixes: [
        { text: "10.8.0.0/24", family: 4, address: "10.8.0.0", prefixLength: 24 },
        { text: "fd00:8::/64", family: 6, address: "fd00:8::", prefixLength: 64 },
      ],
      sourceAddresses: ["10.8.0.2", "fd00:8::2"],
      servers: [
        { text: "10.8.0.1", protocol: "udp", address: "10.8.0.1", family: 4, port: 53 },
        { text: "fd00:8::1", protocol: "udp", address: "fd00:8::1", family: 6, port: 53 },
      ],
      // ~corp.example.com routes only; example.net is a search domain, and routes too.
      dnsZones: ["corp.example.com.", "example.net."],
      searchDomains: ["example.net."],
      default: false,
      priority: 0,
      strictRoutes: false,
    },
  ]);
  assert.deepEqual(config.discovery, { ra: [], host: true });
  assert.deepEqual(reads, [], "resolv.conf is not read when resolved's links are usable");
  // Per-link servers are not grouped by `ip route get`; `~.` decides, so no default route lookup.
  assert.deepEqual(ipCalls, ["addr show dev wlp2s0", "addr show dev wg0"]);
});

Deno.test("buildHostDefault() mirrors systemd-resolved's DefaultRoute", async (t) => {
  const run = async (dns: string, domain: string, defaultRoute?: string) => {
    const { deps, ipCalls } = fakeHost({}, LAPTOP_IP, {
      [RESOLVECTL[0]!]: dns,
      [RESOLVECTL[1]!]: domain,
      ...(defaultRoute !== undefined ? { [RESOLVECTL[2]!]: defaultRoute } : {}),
    });
    return { pvds: summary(await buildHostDefault(deps)), ipCalls };
  };
  const dns = "Global:\nLink 3 (wlp2s0): 192.168.1.1\nLink 5 (wg0): 10.8.0.1\n";

  await t.step(
    "without default-route output: routing-only domains make a link non-default",
    async () => {
      const { pvds } = await run(
        dns,
        "Global:\nLink 3 (wlp2s0): lan\nLink 5 (wg0): ~corp.example.com\n",
      );
      assert.deepEqual(pvds.map((p) => [p.id, p.default, p.dnsZones, p.searchDomains]), [
        ["implicit:wlp2s0", true, ["lan."], ["lan."]],
        ["implicit:wg0", false, ["corp.example.com."], []],
      ]);
    },
  );
  await t.step(
    "~. makes a VPN the default and the preferred one, even before the Wi-Fi",
    async () => {
      const { pvds, ipCalls } = await run(
        dns,
        "Global:\nLink 3 (wlp2s0): lan\nLink 5 (wg0): ~. ~corp.example.com\n",
      );
      assert.deepEqual(pvds.map((p) => [p.id, p.default, p.priority, p.dnsZones]), [
        ["implicit:wlp2s0", true, 0, ["lan."]],
        ["implicit:wg0", true, 100, ["corp.example.com."]],
      ]);
      assert.ok(!ipCalls.includes("route show default"));
    },
  );
  await t.step("resolved's DefaultRoute=no on a link without domains", async () => {
    const { pvds } = await run(
      dns,
      "Global:\nLink 3 (wlp2s0):\nLink 5 (wg0):\n",
      "Link 3 (wlp2s0): yes\nLink 5 (wg0): no\n",
    );
    assert.deepEqual(pvds.map((p) => [p.id, p.default]), [
      ["implicit:wlp2s0", true],
      ["implicit:wg0", false],
    ]);
  });
  await t.step("several defaults without ~.: the kernel's default route picks", async () => {
    const { pvds, ipCalls } = await run(
      "Global:\nLink 5 (wg0): 10.8.0.1\nLink 3 (wlp2s0): 192.168.1.1\n",
      "",
    );
    assert.deepEqual(pvds.map((p) => [p.id, p.default, p.priority]), [
      ["implicit:wg0", true, 0],
      ["implicit:wlp2s0", true, 100],
    ]);
    assert.ok(ipCalls.includes("route show default"));
  });
});

Deno.test("buildHostDefault() reads NetworkManager's devices when systemd-resolved is absent", async () => {
  const { deps, reads, commandCalls } = fakeHost({}, LAPTOP_IP, {
    // Installed, but not running.
    [RESOLVECTL[0]!]: new Error(
      "Failed to get global data: Unit dbus-org.freedesktop.resolve1.service not found.",
    ),
    [RESOLVECTL[1]!]: new Error(
      "Failed to get global data: Unit dbus-org.freedesktop.resolve1.service not found.",
    ),
    [NMCLI]: await fixture("nmcli_device_show_laptop.txt"),
  });
  const config = await buildHostDefault(deps);
  assert.deepEqual(summary(config), [
    {
      id: "implicit:wlp2s0",
      servers: ["192.168.1.1", "2001:db8:1::1", "fe80::1%wlp2s0"],
      dnsZones: ["home.example."],
      searchDomains: ["home.example."],
      default: true,
      priority: 100,
    },
    {
      id: "implicit:wg0",
      servers: ["10.8.0.1", "fd00:8::1"],
      dnsZones: ["corp.example.com.", "example.net."],
      searchDomains: ["example.net."],
      default: false,
      priority: 0,
    },
  ]);
  assert.equal(commandCalls.at(-1), NMCLI);
  assert.deepEqual(reads, []);
});

Deno.test("buildHostDefault() prefers systemd-resolved over NetworkManager", async () => {
  const { deps, commandCalls } = fakeHost({}, LAPTOP_IP, {
    ...await resolvedLaptop(),
    [NMCLI]: "GENERAL.DEVICE:wg0\nIP4.DNS[1]:10.8.0.99\n",
  });
  const config = await buildHostDefault(deps);
  assert.deepEqual(config.pvds.map((p) => p.id), ["implicit:wlp2s0", "implicit:wg0"]);
  assert.deepEqual(config.pvds[1]!.servers.map((s) => s.text), ["10.8.0.1", "fd00:8::1"]);
  assert.ok(!commandCalls.includes(NMCLI), "nmcli is not asked when resolved answered");
});

Deno.test("buildHostDefault() turns systemd-resolved's global servers into implicit:global:IFACE", async () => {
  const { deps, ipCalls } = fakeHost({}, LAPTOP_IP, {
    [RESOLVECTL[0]!]: "Global: 192.0.2.53 2001:db8:53::1\n" +
      "Link 3 (wlp2s0):\nLink 5 (wg0): 10.8.0.1\n",
    [RESOLVECTL[1]!]: "Global: ~example.org\nLink 3 (wlp2s0):\nLink 5 (wg0): ~corp.example.com\n",
  });
  const config = await buildHostDefault(deps);
  assert.deepEqual(summary(config), [
    {
      id: "implicit:wg0",
      servers: ["10.8.0.1"],
      dnsZones: ["corp.example.com."],
      searchDomains: [],
      default: false,
      priority: 0,
    },
    {
      // resolved's global scope always takes names no link claims.
      id: "implicit:global:wlp2s0",
      servers: ["192.0.2.53", "2001:db8:53::1"],
      dnsZones: ["example.org."],
      searchDomains: [],
      default: true,
      priority: 100,
    },
  ]);
  assert.deepEqual(config.pvds[1]!.sourceAddresses, ["192.168.1.23", "2001:db8:1::23"]);
  assert.ok(ipCalls.includes("route get 192.0.2.53"));
});

Deno.test("buildHostDefault() keeps systemd-resolved's strict DNS over TLS", async () => {
  const { deps } = fakeHost({}, LAPTOP_IP, {
    [RESOLVECTL[0]!]: "Global:\nLink 3 (wlp2s0): 192.168.1.1#dns.home.example 192.168.1.2\n" +
      "Link 5 (wg0): [fd00:8::1]:8853#dns.corp.example.com 10.8.0.1:5353\n",
    [RESOLVECTL[1]!]: "",
    [RESOLVECTL[3]!]: "Global: yes\nLink 3 (wlp2s0): n/a\nLink 5 (wg0): no\n",
  });
  const config = await buildHostDefault(deps);
  assert.deepEqual(
    config.pvds.map((
      p,
    ) => [p.id, p.servers.map((s) => [s.protocol, s.address, s.port, s.authName])]),
    [
      // 192.168.1.2 has no name to check a certificate against: left out, not sent in clear.
      ["implicit:wlp2s0", [["tls", "192.168.1.1", 853, "dns.home.example"]]],
      ["implicit:wg0", [["udp", "fd00:8::1", 8853, undefined], [
        "udp",
        "10.8.0.1",
        5353,
        undefined,
      ]]],
    ],
  );
});

Deno.test("buildHostDefault() never forwards a link's server to pvdns itself", async (t) => {
  await t.step("a link server equal to a listen address is dropped", async () => {
    const { deps } = fakeHost({}, LAPTOP_IP, {
      [RESOLVECTL[0]!]: "Link 3 (wlp2s0): 192.168.1.23 192.168.1.1\n",
      [RESOLVECTL[1]!]: "",
    });
    const config = await buildHostDefault({
      ...deps,
      listenAddresses: ["192.168.1.23:53"],
      allow: LAN,
    });
    assert.deepEqual(config.pvds[0]!.servers.map((s) => s.text), ["192.168.1.1"]);
  });
  await t.step("with a wildcard listener, the link's own addresses are dropped", async () => {
    const { deps } = fakeHost({}, LAPTOP_IP, {
      [RESOLVECTL[0]!]: "Link 3 (wlp2s0): 192.168.1.23 192.168.1.1\n",
      [RESOLVECTL[1]!]: "",
    });
    const config = await buildHostDefault({ ...deps, listenAddresses: ["0.0.0.0:53"], allow: LAN });
    assert.deepEqual(config.pvds[0]!.servers.map((s) => s.text), ["192.168.1.1"]);
  });
});

Deno.test("buildHostDefault() falls back to the next source when no link is usable", async (t) => {
  await t.step("resolved's interfaces do not exist here: resolv.conf", async () => {
    const { deps, reads } = fakeHost(
      { [RESOLV_CONF]: "nameserver 192.0.2.1\n" },
      IP_OUTPUT,
      await resolvedLaptop(),
    );
    const config = await buildHostDefault(deps);
    assert.deepEqual(config.pvds.map((p) => p.id), ["implicit:eth0"]);
    assert.deepEqual(reads, [RESOLV_CONF]);
  });
  await t.step(
    "an interface replaced since resolvectl looked (other index) is skipped",
    async () => {
      const ip = structuredClone(LAPTOP_IP) as Record<string, Record<string, unknown>[]>;
      ip["addr show dev wlp2s0"]![0]!.ifindex = 42;
      const { deps } = fakeHost({}, { ...IP_OUTPUT, ...ip }, {
        ...await resolvedLaptop(),
        [NMCLI]: "GENERAL.DEVICE:eth0\nIP4.DNS[1]:192.0.2.1\n",
      });
      const config = await buildHostDefault(deps);
      // wg0 alone (not a default) is still a usable PvD: resolved's data wins over NetworkManager's.
      assert.deepEqual(config.pvds.map((p) => p.id), ["implicit:wg0"]);
    },
  );
  await t.step("nothing usable anywhere: every reason is given", async () => {
    const { deps } = fakeHost({ [RESOLV_CONF]: "nameserver 127.0.0.53\n" }, IP_OUTPUT, {
      ...await resolvedLaptop(),
      [NMCLI]: "GENERAL.DEVICE:wlan9\nIP4.DNS[1]:192.0.2.1\n",
    });
    const errors = await configErrors(buildHostDefault(deps));
    assert.match(errors[0]!, /^no usable DNS server for the embedded default config/);
    assert.deepEqual(errors.slice(1), [
      "/etc/resolv.conf: nameserver 127.0.0.53: it is pvdns's own listen address",
      "systemd-resolved: link wlp2s0: cannot list the addresses of wlp2s0: " +
      "ip -j addr show dev wlp2s0: RTNETLINK answers: Network is unreachable",
      "systemd-resolved: link wg0: cannot list the addresses of wg0: " +
      "ip -j addr show dev wg0: RTNETLINK answers: Network is unreachable",
      "NetworkManager: link wlan9: cannot list the addresses of wlan9: " +
      "ip -j addr show dev wlan9: RTNETLINK answers: Network is unreachable",
    ]);
  });
});

import assert from "node:assert/strict";
import {
  ConfigError,
  loadConfigFile,
  parseConfig,
  parseListenAddress,
  parseServer,
  validateConfig,
} from "../../src/config/parse.ts";
import type { Config, PvdConfig, ServerConfig } from "../../src/config/types.ts";

/** A valid PvD, as JSON text, for files that test something else. */
const HOME =
  `{ "id": "home.example.net", "sourceAddresses": ["192.0.2.10"], "servers": ["192.0.2.1"] }`;

/** Throws unless `fn` throws a ConfigError; returns its error lines. */
function configErrors(fn: () => unknown): readonly string[] {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${error}`);
    assert.equal(error.message, error.errors.join("\n"));
    return error.errors;
  }
  assert.fail("expected a ConfigError, but the config was accepted");
}

function assertHasErrors(errors: readonly string[], expected: readonly string[]) {
  for (const want of expected) {
    assert.ok(
      errors.some((line) => line.includes(want)),
      `missing error ${JSON.stringify(want)}; got:\n${errors.join("\n")}`,
    );
  }
}

function assertDeeplyFrozen(value: unknown, path = "config") {
  if (typeof value !== "object" || value === null) return;
  assert.ok(Object.isFrozen(value), `${path} is not frozen`);
  for (const [key, item] of Object.entries(value)) assertDeeplyFrozen(item, `${path}.${key}`);
}

const DEFAULT_PVD: PvdConfig = {
  id: "home.example.net",
  implicit: false,
  origin: "config",
  prefixes: [],
  sourceAddresses: ["192.0.2.10"],
  servers: [{ text: "192.0.2.1", protocol: "udp", address: "192.0.2.1", family: 4, port: 53 }],
  dnsZones: [],
  searchDomains: [],
  default: true,
  priority: 0,
  strictRoutes: false,
};

Deno.test("parseConfig() fills in every default of a minimal file", () => {
  const config = parseConfig(`{ "pvds": [${HOME}] }`);
  const expected: Config = {
    listen: [{ text: "127.0.0.53:53", address: "127.0.0.53", port: 53 }],
    discovery: { ra: [], host: false },
    pvds: [DEFAULT_PVD],
    rules: [],
    cache: {
      maxEntries: 100000,
      minTtl: 0,
      maxTtl: 86400,
      negativeMaxTtl: 3600,
      servfailTtl: 2,
      maxTotalEntries: 500000,
      serveStale: false,
      staleMaxAge: 86400,
      maxBytes: 64 * 1024 * 1024,
      maxTotalBytes: 256 * 1024 * 1024,
    },
    upstream: { timeoutMs: 2000, deadlineMs: 4500, caseRandomisation: false },
    limits: {
      maxInFlight: 4096,
      maxInFlightPerClient: 1024,
      maxUpstreamQueries: 1024,
      tcpConnections: 256,
      tcpPipeline: 32,
      tcpIdleMs: 10000,
      tcpReadMs: 5000,
      httpConnections: 64,
      httpHeaderMs: 5000,
      httpIdleMs: 30000,
      httpBodyBytes: 64 * 1024,
    },
  };
  assert.deepEqual(config, expected);
});

Deno.test("parseConfig() accepts valid files", async (t) => {
  const cases: { name: string; text: string; check: (config: Config) => void }[] = [
    {
      name: "comments and trailing commas",
      text: `// pvdns
        {
          /* the one PvD */
          "pvds": [${HOME},],   // trailing comma in a list
          "cache": { "maxEntries": 10, },
        }`,
      check: (c) => {
        assert.equal(c.pvds.length, 1);
        assert.equal(c.cache.maxEntries, 10);
      },
    },
    {
      name: "PvD names, zones and addresses are normalised",
      text: `{ "pvds": [{
          "id": "Home.Example.NET.", "interface": "wlan0",
          "prefixes": ["192.0.2.77/24", "2001:DB8:1:0::/64", "::ffff:192.0.2.0/120"],
          "sourceAddresses": ["192.0.2.10", "2001:DB8:1:0:0:0:0:10", "::FFFF:192.0.2.10"],
          "servers": ["192.0.2.1"],
          "dnsZones": ["Example.NET", "corp.example.", "."],
          "searchDomains": ["Example.NET."],
          "priority": -5, "caFile": "/etc/pvdns/home.pem", "strictRoutes": true }] }`,
      check: (c) => {
        const pvd = c.pvds[0]!;
        assert.equal(pvd.id, "home.example.net");
        assert.equal(pvd.interface, "wlan0");
        assert.deepEqual(pvd.prefixes, [
          { text: "192.0.2.0/24", family: 4, address: "192.0.2.0", prefixLength: 24 },
          { text: "2001:db8:1::/64", family: 6, address: "2001:db8:1::", prefixLength: 64 },
          { text: "::ffff:c000:200/120", family: 6, address: "::ffff:c000:200", prefixLength: 120 },
        ]);
        assert.deepEqual(pvd.sourceAddresses, ["192.0.2.10", "2001:db8:1::10", "::ffff:c000:20a"]);
        assert.deepEqual(pvd.dnsZones, ["example.net.", "corp.example.", "."]);
        assert.deepEqual(pvd.searchDomains, ["example.net."]);
        assert.equal(pvd.default, false, "a PvD with zones is not a default PvD unless it says so");
        assert.equal(pvd.priority, -5);
        assert.equal(pvd.caFile, "/etc/pvdns/home.pem");
        assert.equal(pvd.strictRoutes, true);
      },
    },
    {
      name: "implicit and default follow the id and the zones unless given",
      text: `{ "pvds": [
          { "id": "cell", "sourceAddresses": ["10.0.0.2"], "servers": ["10.0.0.1"] },
          { "id": "implicit:eth0", "sourceAddresses": ["10.1.0.2"], "servers": ["10.1.0.1"] },
          { "id": "vpn.example.com", "implicit": true, "default": true, "dnsZones": ["corp.example.com"],
            "sourceAddresses": ["10.8.0.2"], "servers": ["10.8.0.1"] },
          { "id": "lab.example.org", "implicit": false, "default": false,
            "sourceAddresses": ["10.9.0.2"], "servers": ["10.9.0.1"] }] }`,
      check: (c) => {
        assert.deepEqual(
          c.pvds.map((p) => [p.id, p.implicit, p.default]),
          [
            ["cell", true, true],
            ["implicit:eth0", true, true],
            ["vpn.example.com", true, true],
            ["lab.example.org", false, false],
          ],
        );
      },
    },
    {
      name: "listen forms are normalised to ADDR:PORT and [V6]:PORT",
      text: `{ "pvds": [${HOME}], "allow": ["2001:db8::/32"], "listen": [
          "127.0.0.1", "127.0.0.2:5353", "::1", "[::1]:5353", "[2001:DB8::53]:0",
          { "address": "127.0.0.54", "pvd": "HOME.example.net." }] }`,
      check: (c) => {
        assert.deepEqual(c.listen, [
          { text: "127.0.0.1:53", address: "127.0.0.1", port: 53 },
          { text: "127.0.0.2:5353", address: "127.0.0.2", port: 5353 },
          { text: "[::1]:53", address: "::1", port: 53 },
          { text: "[::1]:5353", address: "::1", port: 5353 },
          { text: "[2001:db8::53]:0", address: "2001:db8::53", port: 0 },
          { text: "127.0.0.54:53", address: "127.0.0.54", port: 53, pvd: "home.example.net" },
        ]);
      },
    },
    {
      name: "rules: route with fallback, refusal, local answer",
      text: `{
          "listen": ["127.0.0.53:53", "[::1]:53"],
          "pvds": [${HOME},
            { "id": "vpn.example.com", "sourceAddresses": ["10.8.0.2"], "servers": ["10.8.0.1"],
              "dnsZones": ["corp.example.com"] }],
          "rules": [
            { "match": { "suffix": "Corp.Example.COM." }, "pvd": "VPN.example.com",
              "fallback": ["home.example.net."] },
            { "match": { "client": ["10.8.0.7/16", "2001:db8::/32"], "qtype": ["aaaa", "Https"],
                         "listener": "::1", "suffix": ["a.example", "."] }, "action": "refuse" },
            { "match": { "listener": ["127.0.0.53"] }, "action": "nxdomain" },
            { "match": { "suffix": "printer.example" }, "action": "answer",
              "answer": { "A": ["192.0.2.9"], "AAAA": ["2001:DB8::9"], "TXT": ["hello"] } },
            { "match": { "qtype": "ptr" }, "action": "answer",
              "answer": { "CNAME": "Printer.Example.", "ttl": 5 } }] }`,
      check: (c) => {
        assert.deepEqual(c.rules, [
          {
            index: 0,
            match: { suffix: ["corp.example.com."] },
            action: "route",
            pvd: "vpn.example.com",
            fallback: ["home.example.net"],
          },
          {
            index: 1,
            match: {
              client: [
                { text: "10.8.0.0/16", family: 4, address: "10.8.0.0", prefixLength: 16 },
                { text: "2001:db8::/32", family: 6, address: "2001:db8::", prefixLength: 32 },
              ],
              qtype: ["AAAA", "HTTPS"],
              listener: ["[::1]:53"],
              suffix: ["a.example.", "."],
            },
            action: "refuse",
            fallback: [],
          },
          { index: 2, match: { listener: ["127.0.0.53:53"] }, action: "nxdomain", fallback: [] },
          {
            index: 3,
            match: { suffix: ["printer.example."] },
            action: "answer",
            answer: { A: ["192.0.2.9"], AAAA: ["2001:db8::9"], TXT: ["hello"], ttl: 60 },
            fallback: [],
          },
          {
            index: 4,
            match: { qtype: ["PTR"] },
            action: "answer",
            answer: { A: [], AAAA: [], CNAME: "printer.example.", TXT: [], ttl: 5 },
            fallback: [],
          },
        ]);
      },
    },
    {
      name: "every server form, and the family of a host-named DoH server",
      text:
        `{ "pvds": [{ "id": "home.example.net", "sourceAddresses": ["192.0.2.10", "2001:db8::10"],
          "servers": ["2001:db8::1", "https://dns.example.net/dns-query", "tcp://192.0.2.1"] }] }`,
      check: (c) => {
        const servers = c.pvds[0]!.servers;
        assert.equal(servers[1]!.host, "dns.example.net");
        assert.equal(servers[1]!.family, 6, "the family of the PvD's first Do53 server");
        assert.equal(servers[1]!.address, undefined);
      },
    },
    {
      name: "no PvDs when host discovery is on",
      text: `{ "discovery": { "host": true } }`,
      check: (c) => assert.deepEqual([c.pvds, c.discovery], [[], { ra: [], host: true }]),
    },
    {
      name: "no PvDs when RA discovery is on",
      text: `{ "discovery": { "ra": ["wlan0"] } }`,
      check: (c) => assert.deepEqual(c.discovery, { ra: ["wlan0"], host: false }),
    },
    {
      name: "control, metrics, caFile and tuning",
      text: `{ "pvds": [${HOME}],
          "control": { "listen": "127.0.0.1:8053", "token": "s3cret" },
          "metrics": { "listen": "[::1]:9153" },
          "caFile": "/etc/pvdns/ca.pem",
          "cache": { "maxEntries": 1, "minTtl": 30, "maxTtl": 30, "negativeMaxTtl": 0, "servfailTtl": 0,
                     "maxTotalEntries": 5, "serveStale": true, "staleMaxAge": 60,
                     "maxBytes": 100000, "maxTotalBytes": 200000, "maxEntryBytes": 2000 },
          "upstream": { "timeoutMs": 10, "deadlineMs": 10, "caseRandomisation": true },
          "limits": { "maxInFlight": 1, "maxInFlightPerClient": 4, "maxUpstreamQueries": 5,
                      "tcpConnections": 2, "tcpPipeline": 6, "tcpIdleMs": 3, "tcpReadMs": 7,
                      "httpConnections": 8, "httpHeaderMs": 9, "httpIdleMs": 11,
                      "httpBodyBytes": 1000, "openFiles": 4096,
                      "rateLimit": { "responsesPerSecond": 100 } } }`,
      check: (c) => {
        assert.deepEqual(c.control, { listen: "127.0.0.1:8053", token: "s3cret" });
        assert.deepEqual(c.metrics, { listen: "[::1]:9153" });
        assert.equal(c.caFile, "/etc/pvdns/ca.pem");
        assert.deepEqual(c.cache, {
          maxEntries: 1,
          minTtl: 30,
          maxTtl: 30,
          negativeMaxTtl: 0,
          servfailTtl: 0,
          maxTotalEntries: 5,
          serveStale: true,
          staleMaxAge: 60,
          maxBytes: 100000,
          maxTotalBytes: 200000,
          maxEntryBytes: 2000,
        });
        assert.deepEqual(c.upstream, { timeoutMs: 10, deadlineMs: 10, caseRandomisation: true });
        assert.deepEqual(c.limits, {
          maxInFlight: 1,
          maxInFlightPerClient: 4,
          maxUpstreamQueries: 5,
          tcpConnections: 2,
          tcpPipeline: 6,
          tcpIdleMs: 3,
          tcpReadMs: 7,
          httpConnections: 8,
          httpHeaderMs: 9,
          httpIdleMs: 11,
          httpBodyBytes: 1000,
          openFiles: 4096,
          rateLimit: {
            responsesPerSecond: 100,
            burst: 100,
            slip: 2,
            ipv4PrefixLength: 24,
            ipv6PrefixLength: 56,
          },
        });
      },
    },
    {
      name: "a control socket needs no token",
      text: `{ "pvds": [${HOME}], "control": { "listen": "unix:/run/pvdns.sock" } }`,
      check: (c) => assert.deepEqual(c.control, { listen: "unix:/run/pvdns.sock" }),
    },
  ];
  for (const { name, text, check } of cases) {
    await t.step(name, () => check(parseConfig(text)));
  }
});

Deno.test("parseConfig() returns a deeply frozen config", () => {
  const config = parseConfig(`{ "pvds": [${HOME}],
    "rules": [{ "match": { "suffix": "a.example" }, "action": "answer", "answer": { "A": ["192.0.2.1"] } }] }`);
  assertDeeplyFrozen(config);
  assert.throws(() => (config.pvds as PvdConfig[]).push(DEFAULT_PVD), TypeError);
  assert.throws(() => {
    (config.pvds[0]!.servers[0] as { port: number }).port = 54;
  }, TypeError);
  assert.throws(() => {
    (config.cache as { maxTtl: number }).maxTtl = 1;
  }, TypeError);
});

Deno.test("validateConfig() checks built configs and sets the PvD origin", () => {
  const config = validateConfig(
    { pvds: [{ id: "implicit:eth0", sourceAddresses: ["192.0.2.2"], servers: ["192.0.2.1"] }] },
    { origin: "host" },
  );
  assert.equal(config.pvds[0]!.origin, "host");
  assert.equal(config.pvds[0]!.implicit, true);
  assertHasErrors(configErrors(() => validateConfig({ pvds: [{ id: "" }] })), [
    'pvds[0].id: "" is not a valid PvD id',
    "pvds[0].servers: required key is missing",
  ]);
});

Deno.test("parseConfig() rejects invalid files", async (t) => {
  const cases: { name: string; text: string; errors: string[] }[] = [
    {
      name: "JSONC syntax errors carry line:column",
      text: `{\n  "listen": [\n    "127.0.0.1:53"\n    "127.0.0.2:53"\n  ]\n}`,
      errors: ["4:5: comma expected"],
    },
    { name: "empty file", text: "", errors: ["1:1: value expected"] },
    {
      name: "duplicate keys",
      text: `{ "pvds": [${HOME}], "cache": { "minTtl": 1, "minTtl": 2 } }`,
      errors: ["cache.minTtl: duplicate key (1:"],
    },
    {
      name: "not an object",
      text: `["pvds"]`,
      errors: ['config: expected an object, got ["pvds"]'],
    },
    {
      name: "unknown keys at several depths",
      text: `{ "bogus": 1, "listen": [{ "address": "127.0.0.1", "port": 53 }],
          "pvds": [{ "id": "home.example.net", "bogus": true, "sourceAddresses": ["192.0.2.10"],
                     "servers": ["192.0.2.1"] }],
          "rules": [{ "match": { "suffix": "a.example", "domain": "b" }, "action": "answer",
                      "answer": { "A": ["192.0.2.1"], "MX": ["mail"] } }],
          "cache": { "maxentries": 5 }, "discovery": { "dhcp": true } }`,
      errors: [
        "bogus: unknown key",
        "listen[0].port: unknown key",
        "pvds[0].bogus: unknown key",
        "rules[0].match.domain: unknown key",
        "rules[0].answer.MX: unknown key",
        "cache.maxentries: unknown key",
        "discovery.dhcp: unknown key",
      ],
    },
    {
      name: "bad IP addresses",
      text: `{ "listen": ["1.2.3.4.5", { "address": "127.0.0.01" }], "pvds": [${HOME},
          { "id": "b.example", "sourceAddresses": ["192.0.2.300", "fe80::1%eth0"],
            "servers": ["300.1.1.1", "dns.example.net", "2001:db8::g"] }],
          "rules": [{ "match": { "suffix": "x.example" }, "action": "answer",
                      "answer": { "A": ["2001:db8::1"], "AAAA": ["192.0.2.1"] } }] }`,
      errors: [
        'listen[0]: "1.2.3.4.5" is not an IP address',
        'listen[1].address: "127.0.0.01" is not an IP address',
        'pvds[1].sourceAddresses[0]: "192.0.2.300" is not an IP address',
        'pvds[1].sourceAddresses[1]: "fe80::1%eth0": a zone id is not allowed here',
        'pvds[1].servers[0]: "300.1.1.1" is not an IP address',
        'pvds[1].servers[1]: "dns.example.net" is not an IP address',
        'pvds[1].servers[2]: "2001:db8::g" is not an IP address',
        'rules[0].answer.A[0]: "2001:db8::1" is not an IPv4 address',
        'rules[0].answer.AAAA[0]: "192.0.2.1" is not an IPv6 address',
      ],
    },
    {
      name: "bad CIDR prefixes",
      text: `{ "pvds": [{ "id": "home.example.net", "sourceAddresses": ["192.0.2.10"],
            "servers": ["192.0.2.1"], "prefixes": ["10.0.0.0/33", "10.0.0.0", "fe80::/129", "x/8"] }],
          "rules": [{ "match": { "client": "10.0.0.0/-1" }, "action": "refuse" }] }`,
      errors: [
        'pvds[0].prefixes[0]: "10.0.0.0/33" is not a CIDR prefix',
        'pvds[0].prefixes[1]: "10.0.0.0" is not a CIDR prefix',
        'pvds[0].prefixes[2]: "fe80::/129" is not a CIDR prefix',
        'pvds[0].prefixes[3]: "x/8" is not a CIDR prefix',
        'rules[0].match.client: "10.0.0.0/-1" is not a CIDR prefix',
      ],
    },
    {
      name: "bad ports",
      text:
        `{ "listen": ["127.0.0.1:70000", "[::1]:x", "127.0.0.1:"], "pvds": [{ "id": "home.example.net",
            "sourceAddresses": ["192.0.2.10"], "servers": ["192.0.2.1:0", "tls://192.0.2.1:99999#a.example"] }],
          "metrics": { "listen": "127.0.0.1:-1" } }`,
      errors: [
        'listen[0]: "127.0.0.1:70000": port must be 0-65535: current value is "70000"',
        'listen[1]: "[::1]:x": port must be 0-65535',
        'listen[2]: "127.0.0.1:": port must be 0-65535',
        'pvds[0].servers[0]: "192.0.2.1:0": port must be 1-65535: current value is "0"',
        'pvds[0].servers[1]: "tls://192.0.2.1:99999#a.example": port must be 1-65535',
        'metrics.listen: "127.0.0.1:-1": port must be 0-65535',
      ],
    },
    {
      name: "bad server strings",
      text: `{ "pvds": [{ "id": "home.example.net", "sourceAddresses": ["192.0.2.10"], "servers": [
          "tls://192.0.2.1", "tls://192.0.2.1#", "tls://192.0.2.1/x#a.example", "udp://192.0.2.1#a.example",
          "https://192.0.2.1/dns-query", "quic://192.0.2.1", "https://dns.example.net/dns query"] }] }`,
      errors: [
        'pvds[0].servers[0]: "tls://192.0.2.1": needs an authentication name',
        'pvds[0].servers[1]: "tls://192.0.2.1#": "" is not a valid domain name',
        'pvds[0].servers[2]: "tls://192.0.2.1/x#a.example": a tls server takes no path',
        'pvds[0].servers[3]: "udp://192.0.2.1#a.example": a udp server takes no authentication name',
        'pvds[0].servers[4]: "https://192.0.2.1/dns-query": needs an authentication name',
        'pvds[0].servers[5]: "quic://192.0.2.1": unknown scheme "quic"',
        'pvds[0].servers[6]: "https://dns.example.net/dns query": "/dns query" is not a URL path',
      ],
    },
    {
      name: "a server of a family the PvD has no source address for",
      text: `{ "pvds": [
          { "id": "a.example", "sourceAddresses": ["192.0.2.10"], "servers": ["192.0.2.1", "2001:db8::1"] },
          { "id": "b.example", "sourceAddresses": ["2001:db8::10"],
            "servers": ["[2001:db8::1]:53", "tls://192.0.2.1#dns.b.example"] },
          { "id": "c.example", "sourceAddresses": ["192.0.2.10"], "servers": ["https://dns.c.example/q"] }] }`,
      errors: [
        'pvds[0].servers[1]: "2001:db8::1" is IPv6 but there is no IPv6 source address in sourceAddresses',
        'pvds[1].servers[1]: "tls://192.0.2.1#dns.b.example" is IPv4 but there is no IPv4 source address',
        'pvds[2].servers[0]: "https://dns.c.example/q" names a host, which is looked up only through ' +
        "this PvD's own Do53 servers, and the PvD has none",
      ],
    },
    {
      name: "PvD fields",
      text: `{ "pvds": [
          { "id": "a.example", "sourceAddresses": [], "servers": [], "priority": 1.5,
            "strictRoutes": "yes", "interface": "eth 0", "dnsZones": ["a..example"],
            "searchDomains": ["."], "implicit": "no" },
          { "sourceAddresses": ["192.0.2.10"], "servers": "192.0.2.1" }] }`,
      errors: [
        "pvds[0].sourceAddresses: at least one address is required",
        "pvds[0].servers: at least one server is required",
        "pvds[0].priority: expected an integer, got 1.5",
        'pvds[0].strictRoutes: expected true or false, got "yes"',
        'pvds[0].interface: "eth 0" is not an interface name',
        'pvds[0].dnsZones[0]: "a..example" is not a valid domain name',
        'pvds[0].searchDomains[0]: "." is not a valid domain name',
        'pvds[0].implicit: expected true or false, got "no"',
        "pvds[1].id: required key is missing",
        'pvds[1].servers: expected a list, got "192.0.2.1"',
      ],
    },
    {
      name: "duplicate PvD ids, whatever their case and trailing dot",
      text: `{ "pvds": [${HOME}, { "id": "b.example", "sourceAddresses": ["192.0.2.10"],
          "servers": ["192.0.2.1"] }, { "id": "HOME.example.net.", "sourceAddresses": ["192.0.2.10"],
          "servers": ["192.0.2.1"] }] }`,
      errors: ['pvds[2].id: "HOME.example.net." is a duplicate PvD id'],
    },
    {
      name: "no PvD and no discovery",
      text: `{ "discovery": { "host": false, "ra": [] } }`,
      errors: ["pvds: at least one PvD is required unless discovery is on"],
    },
    {
      name: "listeners: unknown PvD, duplicates",
      text: `{ "pvds": [${HOME}], "listen": ["127.0.0.53:53",
          { "address": "127.0.0.54:53", "pvd": "vpn.example.com" }, "127.0.0.53", "[::1]:53", "::1"] }`,
      errors: [
        'listen[1].pvd: "vpn.example.com" is not a known PvD id',
        'listen[2]: "127.0.0.53" is a duplicate listen address (see listen[0])',
        'listen[4]: "::1" is a duplicate listen address (see listen[3])',
      ],
    },
    {
      name: "a listener off loopback needs an allow list (no open resolver by accident)",
      text: `{ "pvds": [${HOME}], "listen": ["127.0.0.53", "192.0.2.53", "[::]:53"] }`,
      errors: [
        'allow: required because listen[1] "192.0.2.53" is not a loopback address: list the client prefixes that may query (e.g. ["192.0.2.0/24"])',
        'allow: required because listen[2] "[::]:53" is not a loopback address: list the client prefixes that may query (e.g. ["192.0.2.0/24"])',
      ],
    },
    {
      name: "the control API only on loopback or a socket",
      text: `{ "pvds": [${HOME}], "control": { "listen": "192.0.2.1:5380", "token": "t" } }`,
      errors: [
        'control.listen: "192.0.2.1:5380" is not a loopback address: the control API is never reachable from another host (use unix:PATH or 127.0.0.1:PORT)',
      ],
    },
    {
      name: "allow, rate limit and bounds out of range",
      text: `{ "pvds": [${HOME}], "allow": ["192.0.2.0/33", []],
          "cache": { "serveStale": "yes", "staleMaxAge": 0, "maxTotalEntries": 0 },
          "limits": { "tcpPipeline": 0, "tcpReadMs": -1,
                      "rateLimit": { "responsesPerSecond": 0, "slip": 101, "ipv4PrefixLength": 33 } } }`,
      errors: [
        'allow[0]: "192.0.2.0/33" is not a CIDR prefix',
        "allow[1]: expected a string, got []",
        'cache.serveStale: expected true or false, got "yes"',
        "cache.staleMaxAge: must be at least 1: current value is 0",
        "cache.maxTotalEntries: must be at least 1: current value is 0",
        "limits.tcpPipeline: must be at least 1: current value is 0",
        "limits.tcpReadMs: must be at least 1: current value is -1",
        "limits.rateLimit.responsesPerSecond: must be at least 1: current value is 0",
        "limits.rateLimit.slip: must be at most 100: current value is 101",
        "limits.rateLimit.ipv4PrefixLength: must be at most 32: current value is 33",
      ],
    },
    {
      name: "empty listen list",
      text: `{ "pvds": [${HOME}], "listen": [] }`,
      errors: ["listen: at least one listen address is required"],
    },
    {
      name: "rules: unknown PvDs, fallbacks, actions, answers, matches",
      text: `{ "pvds": [${HOME}], "rules": [
          { "match": { "suffix": "a.example" }, "pvd": "nope", "fallback": ["also-nope"] },
          { "match": { "suffix": "b.example" }, "pvd": "home.example.net",
            "fallback": ["Home.example.net"] },
          { "match": { "suffix": "c.example" }, "action": "refuse", "fallback": ["home.example.net"] },
          { "match": { "suffix": "d.example" }, "pvd": "home.example.net", "action": "refuse" },
          { "match": { "suffix": "e.example" } },
          { "match": { "suffix": "f.example" }, "action": "answer" },
          { "match": { "suffix": "g.example" }, "action": "nxdomain", "answer": { "A": ["192.0.2.1"] } },
          { "match": {}, "action": "route" },
          { "match": { "qtype": ["AAAA", "FOO"], "listener": "127.0.0.1:53", "suffix": [] },
            "action": "answer", "answer": { "CNAME": "h.example", "A": ["192.0.2.1"] } },
          { "match": { "suffix": 5 }, "action": "answer", "answer": { "ttl": -1 } },
          { "action": "refuse" }] }`,
      errors: [
        'rules[0].pvd: "nope" is not a known PvD id',
        'rules[0].fallback[0]: "also-nope" is not a known PvD id',
        `rules[1].fallback[0]: "Home.example.net" is the rule's own PvD`,
        'rules[2].fallback: only allowed with "pvd"',
        'rules[3]: has both "pvd" and "action"; give one',
        'rules[4]: needs "pvd" (route to a PvD) or "action"',
        'rules[5].answer: required when action is "answer"',
        'rules[6].answer: only allowed when action is "answer"',
        "rules[7].match: needs at least one of suffix, client, listener, qtype",
        'rules[7].action: "route" is not one of "refuse", "nxdomain", "answer"',
        'rules[8].match.qtype[1]: "FOO" is not a known query type',
        'rules[8].match.listener: "127.0.0.1:53" is not a configured listen address',
        "rules[8].match.suffix: an empty list matches nothing",
        "rules[8].answer: CNAME cannot be combined with other records",
        "rules[9].match.suffix: expected a string or a list, got 5",
        "rules[9].answer.ttl: must be at least 0: current value is -1",
        "rules[10].match: required key is missing",
      ],
    },
    {
      name: "an answer with no records",
      text: `{ "pvds": [${HOME}], "rules": [
          { "match": { "suffix": "a.example" }, "action": "answer", "answer": {} }] }`,
      errors: ["rules[0].answer: needs at least one of A, AAAA, CNAME, TXT"],
    },
    {
      name: "numbers out of range and bounds that contradict each other",
      text: `{ "pvds": [${HOME}],
          "cache": { "maxEntries": 0, "minTtl": 600, "maxTtl": 60, "servfailTtl": 301 },
          "upstream": { "timeoutMs": 5000 },
          "limits": { "maxInFlight": "many", "tcpIdleMs": 1e12 } }`,
      errors: [
        "cache.maxEntries: must be at least 1: current value is 0",
        "cache.servfailTtl: must be at most 300: current value is 301",
        "cache.minTtl: 600 is greater than cache.maxTtl (60)",
        "upstream.deadlineMs: 4500 (the default) is less than upstream.timeoutMs (5000)",
        'limits.maxInFlight: expected a number, got "many"',
        "limits.tcpIdleMs: must be at most 2147483647: current value is 1000000000000",
      ],
    },
    {
      name: "control and metrics",
      text: `{ "pvds": [${HOME}], "control": { "listen": "127.0.0.53:53" },
          "metrics": { "listen": "127.0.0.53" } }`,
      errors: [
        "control.token: required when the control API listens on TCP",
        'control.listen: "127.0.0.53:53" is already used by listen[0]',
        'metrics.listen: "127.0.0.53" is already used by listen[0]',
      ],
    },
  ];
  for (const { name, text, errors } of cases) {
    await t.step(name, () => assertHasErrors(configErrors(() => parseConfig(text)), errors));
  }
});

Deno.test("parseConfig() reports every error of a file together", () => {
  const errors = configErrors(() =>
    parseConfig(`{
      "listen": ["127.0.0.53:53", { "address": "127.0.0.54:53", "pvd": "vpn.example.com" }],
      "pvds": [
        { "id": "home.example.net", "bogus": 1, "prefixes": ["10.0.0.0/33"],
          "sourceAddresses": ["192.0.2.10"], "servers": ["192.0.2.1"] },
        { "id": "b.example", "sourceAddresses": ["192.0.2.10"], "servers": ["300.1.1.1", "2001:db8::1"] },
        { "id": "home.example.net", "sourceAddresses": ["192.0.2.10"], "servers": ["tls://192.0.2.1"] },
      ],
      "rules": [{ "match": { "suffix": "corp.example" }, "pvd": "nope" }],
    }`)
  );
  assert.deepEqual(
    [...errors].sort(),
    [
      'listen[1].pvd: "vpn.example.com" is not a known PvD id',
      'pvds[0].prefixes[0]: "10.0.0.0/33" is not a CIDR prefix',
      "pvds[0].bogus: unknown key",
      'pvds[1].servers[0]: "300.1.1.1" is not an IP address',
      'pvds[1].servers[1]: "2001:db8::1" is IPv6 but there is no IPv6 source address in sourceAddresses',
      'pvds[2].servers[0]: "tls://192.0.2.1": needs an authentication name: tls://ADDR#AUTH-NAME',
      'pvds[2].id: "home.example.net" is a duplicate PvD id',
      'rules[0].pvd: "nope" is not a known PvD id',
    ].sort(),
  );
});

Deno.test("parseServer() splits every server form", async (t) => {
  const cases: [string, Omit<ServerConfig, "text">][] = [
    ["192.0.2.1", { protocol: "udp", address: "192.0.2.1", family: 4, port: 53 }],
    ["192.0.2.1:5353", { protocol: "udp", address: "192.0.2.1", family: 4, port: 5353 }],
    ["2001:DB8::1", { protocol: "udp", address: "2001:db8::1", family: 6, port: 53 }],
    ["[2001:db8::1]:5353", { protocol: "udp", address: "2001:db8::1", family: 6, port: 5353 }],
    ["fe80::1%eth0", { protocol: "udp", address: "fe80::1", family: 6, port: 53, zone: "eth0" }],
    ["[fe80::1%wlan0]:54", {
      protocol: "udp",
      address: "fe80::1",
      family: 6,
      port: 54,
      zone: "wlan0",
    }],
    ["::ffff:192.0.2.1", { protocol: "udp", address: "::ffff:c000:201", family: 6, port: 53 }],
    ["udp://192.0.2.1", { protocol: "udp", address: "192.0.2.1", family: 4, port: 53 }],
    ["UDP://[2001:db8::1]:54", { protocol: "udp", address: "2001:db8::1", family: 6, port: 54 }],
    ["tcp://192.0.2.1:5353", { protocol: "tcp", address: "192.0.2.1", family: 4, port: 5353 }],
    ["tls://192.0.2.1#DNS.Example.net.", {
      protocol: "tls",
      address: "192.0.2.1",
      family: 4,
      port: 853,
      authName: "dns.example.net",
    }],
    ["tls://[2001:db8::1]:8853#dns.example.net", {
      protocol: "tls",
      address: "2001:db8::1",
      family: 6,
      port: 8853,
      authName: "dns.example.net",
    }],
    ["https://192.0.2.1/dns-query#dns.example.net", {
      protocol: "https",
      address: "192.0.2.1",
      family: 4,
      port: 443,
      authName: "dns.example.net",
      path: "/dns-query",
    }],
    ["https://[2001:db8::1]:8443/q{?dns}#dns.example.net", {
      protocol: "https",
      address: "2001:db8::1",
      family: 6,
      port: 8443,
      authName: "dns.example.net",
      path: "/q",
    }],
    ["https://DNS.example.net/dns-query", {
      protocol: "https",
      host: "dns.example.net",
      port: 443,
      authName: "dns.example.net",
      path: "/dns-query",
    }],
    ["https://dns.example.net:8443", {
      protocol: "https",
      host: "dns.example.net",
      port: 8443,
      authName: "dns.example.net",
      path: "/dns-query",
    }],
  ];
  for (const [text, expected] of cases) {
    await t.step(text, () => assert.deepEqual(parseServer(text), { text, ...expected }));
  }
  await t.step("errors are plain Errors naming the value", () => {
    assert.throws(() => parseServer("300.1.1.1"), {
      name: "Error",
      message: '"300.1.1.1" is not an IP address',
    });
    assert.throws(() => parseServer("tls://192.0.2.1"), /"tls:\/\/192\.0\.2\.1": needs an auth/);
  });
});

Deno.test("parseListenAddress() normalises and rejects", () => {
  assert.deepEqual(parseListenAddress("127.0.0.1"), {
    text: "127.0.0.1:53",
    address: "127.0.0.1",
    port: 53,
  });
  assert.deepEqual(parseListenAddress("[0:0::1]:0"), { text: "[::1]:0", address: "::1", port: 0 });
  assert.throws(() => parseListenAddress("localhost:53"), {
    message: '"localhost:53": "localhost" is not an IP address',
  });
  assert.throws(() => parseListenAddress("[127.0.0.1]:53"), /is not an IPv6 address/);
});

Deno.test("loadConfigFile() reads a file and names the path it cannot read", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/pvdns.jsonc`;
    await Deno.writeTextFile(path, `{ "pvds": [${HOME}], }`);
    assert.equal((await loadConfigFile(path)).pvds[0]!.id, "home.example.net");
    const missing = `${dir}/missing.jsonc`;
    const error = await loadConfigFile(missing).then(() => undefined, (e: unknown) => e);
    assert.ok(error instanceof ConfigError);
    assert.match(error.message, new RegExp(`^${missing}: cannot read the config file`));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

import assert from "node:assert/strict";
import ipaddr from "ipaddr.js";
import { cidr } from "../../src/policy/prefixes.ts";
import { type Route, type RouteInput, Router } from "../../src/policy/router.ts";
import type { PvdConfig, RuleConfig } from "../../src/config/types.ts";

function pvd(id: string, over: Partial<PvdConfig> = {}): PvdConfig {
  return {
    id,
    implicit: false,
    origin: "config",
    prefixes: [],
    sourceAddresses: ["127.0.0.1"],
    servers: [{ text: "127.0.0.2", protocol: "udp", address: "127.0.0.2", family: 4, port: 53 }],
    dnsZones: [],
    searchDomains: [],
    default: false,
    priority: 0,
    strictRoutes: false,
    ...over,
  };
}

const pvds = [
  pvd("home.example", {
    default: true,
    priority: 10,
    dnsZones: ["home.test."],
    prefixes: [cidr("192.0.2.0/24"), cidr("2001:db8:1::/48")],
  }),
  pvd("vpn.example", {
    dnsZones: ["corp.test.", "eng.home.test.", "10.in-addr.arpa."],
    prefixes: [cidr("10.8.0.0/16"), cidr("2001:db8:2:40::/58")],
  }),
  pvd("cell.example", { default: true, priority: 10, prefixes: [cidr("198.51.100.0/24")] }),
  pvd("lab.example", { dnsZones: ["home.arpa."], prefixes: [cidr("10.8.64.0/26")], priority: -1 }),
];
const rules: RuleConfig[] = [
  { index: 0, match: { suffix: ["ads.test."] }, action: "nxdomain", fallback: [] },
  {
    index: 1,
    match: { suffix: ["blocked.test."], qtype: ["AAAA"] },
    action: "refuse",
    fallback: [],
  },
  {
    index: 2,
    match: { client: [cidr("10.9.0.0/16")] },
    action: "route",
    pvd: "vpn.example",
    fallback: ["home.example"],
  },
  {
    index: 3,
    match: { listener: ["127.0.0.55:53"] },
    action: "route",
    pvd: "cell.example",
    fallback: [],
  },
  {
    index: 4,
    match: { suffix: ["printer.test."] },
    action: "answer",
    fallback: [],
    answer: { A: ["192.0.2.99"], AAAA: [], TXT: [], ttl: 30 },
  },
];
/** The ip6.arpa name of an IPv6 address, written out nibble by nibble. */
function ptr6(address: string): string {
  const hex = ipaddr.parse(address).toByteArray().map((b) => b.toString(16).padStart(2, "0")).join(
    "",
  );
  return [...hex].reverse().join(".") + ".ip6.arpa.";
}
const router = new Router({ pvds, rules });
const listener = (text: string, bound?: string) => ({
  text,
  address: text.split(":")[0]!,
  port: 53,
  ...(bound ? { pvd: bound } : {}),
});

type Want = { pvd: string; step: Route["step"] } | { local: string; step: Route["step"] };
const table: { name: string; input: RouteInput; want: Want }[] = [
  // special-use names, before anything else
  {
    name: "localhost",
    input: { qname: "localhost.", qtype: 1 },
    want: { local: "localhost", step: "special" },
  },
  {
    name: "*.localhost",
    input: { qname: "db.localhost.", qtype: 28, explicitPvd: "vpn.example" },
    want: { local: "localhost", step: "special" },
  },
  {
    name: "invalid",
    input: { qname: "x.invalid.", qtype: 1 },
    want: { local: "nxdomain", step: "special" },
  },
  {
    name: ".local is mDNS",
    input: { qname: "printer.local.", qtype: 1 },
    want: { local: "nxdomain", step: "special" },
  },
  {
    name: "resolver.arpa NODATA",
    input: { qname: "_dns.resolver.arpa.", qtype: 64 },
    want: { local: "nodata", step: "special" },
  },
  {
    name: "home.arpa claimed",
    input: { qname: "nas.home.arpa.", qtype: 1 },
    want: { pvd: "lab.example", step: "zone" },
  },
  {
    name: "RFC 6303 unowned",
    input: { qname: "1.1.168.192.in-addr.arpa.", qtype: 12 },
    want: { local: "nxdomain", step: "special" },
  },
  {
    name: "RFC 6303 fe80::/10",
    input: { qname: ptr6("fe80::1"), qtype: 12 },
    want: { local: "nxdomain", step: "special" },
  },
  {
    name: "RFC 6303 owned by a PvD prefix",
    input: { qname: "7.1.8.10.in-addr.arpa.", qtype: 12 },
    want: { pvd: "vpn.example", step: "reverse" },
  },
  {
    name: "RFC 6303 owned by a dnsZones claim",
    input: { qname: "9.9.9.10.in-addr.arpa.", qtype: 12 },
    want: { pvd: "vpn.example", step: "zone" },
  },
  // explicit choice
  {
    name: "API names a PvD",
    input: { qname: "www.corp.test.", qtype: 1, explicitPvd: "cell.example" },
    want: { pvd: "cell.example", step: "explicit" },
  },
  {
    name: "listener bound to a PvD",
    input: {
      qname: "www.home.test.",
      qtype: 1,
      listener: listener("127.0.0.54:53", "vpn.example"),
    },
    want: { pvd: "vpn.example", step: "listener" },
  },
  {
    name: "API names an unknown PvD",
    input: { qname: "a.test.", qtype: 1, explicitPvd: "nope" },
    want: { local: "refuse", step: "explicit" },
  },
  // rules, first match wins
  {
    name: "rule nxdomain",
    input: { qname: "x.ads.test.", qtype: 1 },
    want: { local: "nxdomain", step: "rule" },
  },
  {
    name: "rule with qtype matches",
    input: { qname: "blocked.test.", qtype: 28 },
    want: { local: "refuse", step: "rule" },
  },
  {
    name: "rule with qtype skips",
    input: { qname: "blocked.test.", qtype: 1 },
    want: { pvd: "home.example", step: "default" },
  },
  {
    name: "rule by client prefix",
    input: { qname: "www.home.test.", qtype: 1, client: "10.9.3.4" },
    want: { pvd: "vpn.example", step: "rule" },
  },
  {
    name: "rule by listener",
    input: { qname: "www.example.", qtype: 1, listener: listener("127.0.0.55:53") },
    want: { pvd: "cell.example", step: "rule" },
  },
  {
    name: "rule answer",
    input: { qname: "printer.test.", qtype: 1 },
    want: { local: "answer", step: "rule" },
  },
  // zones, longest suffix
  {
    name: "zone",
    input: { qname: "www.home.test.", qtype: 1 },
    want: { pvd: "home.example", step: "zone" },
  },
  {
    name: "longer zone wins",
    input: { qname: "git.eng.home.test.", qtype: 1 },
    want: { pvd: "vpn.example", step: "zone" },
  },
  {
    name: "zone itself",
    input: { qname: "corp.test.", qtype: 6 },
    want: { pvd: "vpn.example", step: "zone" },
  },
  {
    name: "name case is normalised before",
    input: { qname: "xcorp.test.", qtype: 1 },
    want: { pvd: "home.example", step: "default" },
  },
  // reverse zones from prefixes
  {
    name: "v4 /24 octet boundary",
    input: { qname: "5.2.0.192.in-addr.arpa.", qtype: 12 },
    want: { pvd: "home.example", step: "reverse" },
  },
  {
    name: "v4 /26 inside /16: longest prefix",
    input: { qname: "5.64.8.10.in-addr.arpa.", qtype: 12 },
    want: { pvd: "lab.example", step: "reverse" },
  },
  {
    name: "v4 /26 outside the /26",
    input: { qname: "200.64.8.10.in-addr.arpa.", qtype: 12 },
    want: { pvd: "vpn.example", step: "reverse" },
  },
  {
    name: "v6 /48 nibble boundary",
    input: { qname: ptr6("2001:db8:1::1"), qtype: 12 },
    want: { pvd: "home.example", step: "reverse" },
  },
  {
    name: "v6 /58 inside a nibble",
    input: { qname: ptr6("2001:db8:2:41::1"), qtype: 12 },
    want: { pvd: "vpn.example", step: "reverse" },
  },
  {
    name: "v6 /58 sibling is not",
    input: { qname: ptr6("2001:db8:2:81::1"), qtype: 12 },
    want: { local: "nxdomain", step: "special" },
  },
  {
    name: "a PTR for a public address nobody owns",
    input: { qname: "8.8.8.8.in-addr.arpa.", qtype: 12 },
    want: { pvd: "home.example", step: "default" },
  },
  // client prefix
  {
    name: "client inside a PvD prefix",
    input: { qname: "www.example.", qtype: 1, client: "198.51.100.7" },
    want: { pvd: "cell.example", step: "client" },
  },
  {
    name: "client v6",
    input: { qname: "www.example.", qtype: 1, client: "2001:db8:2:40::9" },
    want: { pvd: "vpn.example", step: "client" },
  },
  // default: tie on priority goes to the earlier PvD, never to both
  {
    name: "default",
    input: { qname: "www.example.", qtype: 1, client: "127.0.0.1" },
    want: { pvd: "home.example", step: "default" },
  },
];

Deno.test("Router.route() follows the routing order", async (t) => {
  for (const c of table) {
    await t.step(c.name, () => {
      const r = router.route(c.input);
      assert.equal(r.step, c.want.step, JSON.stringify(r));
      if ("pvd" in c.want) {
        assert.equal(r.kind, "pvd", JSON.stringify(r));
        assert.equal(r.kind === "pvd" && r.pvd, c.want.pvd);
      } else {
        assert.equal(r.kind, "local", JSON.stringify(r));
        const a = r.kind === "local" ? r.answer : undefined;
        assert.equal(typeof a === "string" ? a : "answer", c.want.local);
      }
    });
  }
});

Deno.test("Router keeps a rule's fallback and nothing else carries one", () => {
  const r = router.route({ qname: "www.home.test.", qtype: 1, client: "10.9.3.4" });
  assert.deepEqual(r.kind === "pvd" && r.fallback, ["home.example"]);
  const z = router.route({ qname: "www.home.test.", qtype: 1 });
  assert.deepEqual(z.kind === "pvd" && z.fallback, []);
});

Deno.test("Router picks the highest priority default, and none when no PvD is a default", () => {
  const r = new Router({
    pvds: [pvd("a", { default: true }), pvd("b", { default: true, priority: 5 })],
  });
  assert.equal(r.defaultPvd, "b");
  const none = new Router({ pvds: [pvd("a", { dnsZones: ["a.test."] })] });
  const out = none.route({ qname: "www.example.", qtype: 1 });
  assert.equal(out.kind === "local" && out.answer, "refuse");
  const home = none.route({ qname: "x.home.arpa.", qtype: 1 });
  assert.equal(home.kind === "local" && home.answer, "nxdomain", "home.arpa unclaimed");
});

Deno.test("a zone claimed by two PvDs goes to the higher priority one", () => {
  const r = new Router({
    pvds: [pvd("a", { dnsZones: ["x.test."] }), pvd("b", { dnsZones: ["x.test."], priority: 1 })],
  });
  assert.equal(r.longestZone("w.x.test.")?.pvd, "b");
  const tie = new Router({
    pvds: [pvd("a", { dnsZones: ["x.test."] }), pvd("b", { dnsZones: ["x.test."] })],
  });
  assert.equal(tie.longestZone("w.x.test.")?.pvd, "a");
});

/**
 * How zone-claim verdicts are shown and configured: `pvdns route` explanations, the config's
 * refusal of a public suffix in `acceptZones`, `discovery.pvdOptions` applied by the registry, the
 * JSON view of a PvD (and back, for `pvdns route --daemon`), and the metrics gauge.
 */

import assert from "node:assert/strict";
import { Registry } from "prom-client";
import { explainRoute } from "../../src/policy/explain.ts";
import { judgeZoneClaims } from "../../src/policy/zone_claims.ts";
import { PvdRegistry } from "../../src/pvd/registry.ts";
import { ConfigError, parseConfig } from "../../src/config/parse.ts";
import type { PvdConfig } from "../../src/config/types.ts";
import { ResolverMetrics } from "../../src/service/metrics.ts";
import { pvdConfigFromInfo, pvdInfo } from "../../src/pvd/pvd_info.ts";

/** A config with a full-tunnel VPN (`.`, priority 100) and discovery on wlan0. */
function vpnConfig(pvdOptions?: unknown) {
  return parseConfig(JSON.stringify({
    discovery: { ra: ["wlan0"], ...(pvdOptions ? { pvdOptions } : {}) },
    pvds: [{
      id: "vpn.example.com",
      sourceAddresses: ["10.8.0.2"],
      servers: ["10.8.0.1"],
      dnsZones: ["."],
      default: true,
      priority: 100,
    }],
  }));
}

/** A Wi-Fi PvD learned from RAs on wlan0, its DNSSL `com`, `wifi.example` and `lan`. */
const wifi: PvdConfig = {
  id: "wifi",
  implicit: true,
  origin: "ra",
  interface: "wlan0",
  prefixes: [],
  sourceAddresses: ["2001:db8:cafe::100"],
  servers: [{
    text: "2001:db8:cafe::53",
    protocol: "udp",
    address: "2001:db8:cafe::53",
    family: 6,
    port: 53,
  }],
  dnsZones: ["com.", "wifi.example.", "lan."],
  searchDomains: ["com.", "wifi.example.", "lan."],
  zoneSources: { "com.": "dnssl", "wifi.example.": "dnssl", "lan.": "dnssl" },
  default: true,
  priority: 0,
  strictRoutes: false,
};

Deno.test("pvdns route explains refused and accepted network claims", async (t) => {
  const config = vpnConfig();
  const pvds = [wifi, ...config.pvds];
  await t.step("a public suffix", () => {
    const { lines } = explainRoute({ ...config, pvds }, { name: "www.bank.com" });
    assert.deepEqual(lines.slice(1, 4), [
      "step:     3 longest DNS zone",
      "zone:     .",
      "refused:  zone com. claimed by network wifi (dnssl), not accepted: public suffix " +
      "(Public Suffix List)",
    ]);
  });
  await t.step("a zone that would capture names from the full tunnel", () => {
    const { lines } = explainRoute({ ...config, pvds }, { name: "www.wifi.example" });
    assert.ok(
      lines.includes(
        "refused:  zone wifi.example. claimed by network wifi (dnssl), not accepted: would " +
          "capture names from vpn.example.com (claims ., priority 100)",
      ),
      lines.join("\n"),
    );
    assert.ok(lines.includes("pvd:      vpn.example.com"));
  });
  await t.step("an accepted network zone says why", () => {
    const { lines } = explainRoute({ ...config, pvds }, { name: "router.lan" });
    assert.ok(
      lines.includes(
        "zone:     lan. from the network (dnssl), accepted: private-use name " +
          "(.lan, the usual home-router domain)",
      ),
      lines.join("\n"),
    );
    assert.ok(!lines.some((l) => l.startsWith("refused:")));
  });
});

Deno.test("acceptZones may not name a public suffix (config error naming the path)", () => {
  const bad = () =>
    vpnConfig([{ interface: "wlan0", acceptZones: ["lan", "Bank.co.uk.", "co.uk", "github.io"] }]);
  assert.throws(bad, (e: unknown) => {
    assert.ok(e instanceof ConfigError);
    assert.deepEqual(e.errors, [
      'discovery.pvdOptions[0].acceptZones[2]: "co.uk." cannot be accepted from a network: ' +
      "it is a public suffix (Public Suffix List)",
      'discovery.pvdOptions[0].acceptZones[3]: "github.io." cannot be accepted from a network: ' +
      "it is a public suffix (Public Suffix List, private section)",
    ]);
    return true;
  });
  const ok = vpnConfig([{ interface: "wlan0", acceptZones: ["lan", "Bank.co.uk."] }]);
  assert.deepEqual(ok.discovery.pvdOptions?.[0]?.acceptZones, ["lan.", "bank.co.uk."]);
});

Deno.test("the registry applies discovery.pvdOptions acceptZones and judges every claim", () => {
  const verdicts = (registry: PvdRegistry) =>
    registry.effective().pvds.find((p) => p.id === "wifi")!.zoneClaims!.map((c) => [
      c.zone,
      c.accepted,
      c.reason,
    ]);
  const registry = new PvdRegistry(vpnConfig());
  registry.setDiscovered("ra", [wifi]);
  assert.deepEqual(verdicts(registry), [
    ["com.", false, "public-suffix"],
    ["wifi.example.", false, "full-tunnel"],
    ["lan.", true, "private-use"],
  ]);
  registry.setConfig(vpnConfig([{ interface: "wlan0", acceptZones: ["wifi.example."] }]));
  assert.deepEqual(verdicts(registry), [
    ["com.", false, "public-suffix"],
    ["wifi.example.", true, "accept-zones"],
    ["lan.", true, "private-use"],
  ]);
  // An entry for another interface gives nothing.
  registry.setConfig(vpnConfig([{ interface: "eth9", acceptZones: ["wifi.example."] }]));
  assert.deepEqual(verdicts(registry)[1], ["wifi.example.", false, "full-tunnel"]);
});

Deno.test("a PvD's JSON view shows each zone's source and verdict, and reads back", () => {
  const registry = new PvdRegistry(vpnConfig());
  registry.setDiscovered("ra", [wifi]);
  const pvds = registry.effective().pvds;
  const info = pvdInfo(pvds.find((p) => p.id === "wifi")!);
  assert.deepEqual(info.zones.map((z) => [z.zone, z.source, z.accepted]), [
    ["com.", "dnssl", false],
    ["wifi.example.", "dnssl", false],
    ["lan.", "dnssl", true],
  ]);
  assert.match(info.zones[1]!.detail, /would capture names from vpn\.example\.com/);
  assert.deepEqual(pvdInfo(pvds[0]!).zones.map((z) => [z.zone, z.source, z.reason]), [
    [".", "config", "config"],
  ]);
  // `pvdns route --daemon` routes with PvDs read back from this view: same verdicts.
  const back = pvds.map((p) => pvdConfigFromInfo(pvdInfo(p)));
  const strip = (claims: ReturnType<typeof judgeZoneClaims>) =>
    claims.map(({ pvd, zone, accepted, reason }) => ({ pvd, zone, accepted, reason }));
  assert.deepEqual(strip(judgeZoneClaims(back)), strip(judgeZoneClaims(pvds)));
});

Deno.test({
  name: "pvdns_zone_claims counts claims by PvD, origin and verdict",
  // prom-client's default process metrics keep an event-loop monitor open.
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const registry = new Registry();
    const pvds = [wifi, ...vpnConfig().pvds];
    new ResolverMetrics(registry, {
      pvds: () => pvds,
      cacheEntries: () => new Map(),
      leakBlocked: () => new Map(),
      fallbacks: () => new Map(),
      zoneClaims: () => judgeZoneClaims(pvds),
    }, "test");
    const lines = (await registry.metrics()).split("\n")
      .filter((l) => l.startsWith("pvdns_zone_claims{")).sort();
    assert.deepEqual(lines, [
      'pvdns_zone_claims{pvd="vpn.example.com",origin="config",verdict="accepted"} 1',
      'pvdns_zone_claims{pvd="wifi",origin="dnssl",verdict="accepted"} 1',
      'pvdns_zone_claims{pvd="wifi",origin="dnssl",verdict="full_tunnel"} 1',
      'pvdns_zone_claims{pvd="wifi",origin="dnssl",verdict="public_suffix"} 1',
    ]);
  },
});

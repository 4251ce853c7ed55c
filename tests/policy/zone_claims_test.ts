/**
 * Who may claim a zone (src/policy/zone_claims.ts): the verdict on each claim, and what the router
 * does with it. Each test names the rule it depends on; disabling that rule makes it fail.
 */

import assert from "node:assert/strict";
import { cidr } from "../../src/policy/prefixes.ts";
import { Router } from "../../src/policy/router.ts";
import { judgeZoneClaims } from "../../src/policy/zone_claims.ts";
import type { PvdConfig, ZoneClaim, ZoneSource } from "../../src/config/types.ts";

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

/** An RA-learned PvD whose zones all came from `source`. */
function network(id: string, zones: string[], over: Partial<PvdConfig> = {}): PvdConfig {
  const source: ZoneSource = "dnssl";
  return pvd(id, {
    origin: "ra",
    dnsZones: zones,
    searchDomains: zones,
    zoneSources: Object.fromEntries(zones.map((z) => [z, source])),
    default: true,
    ...over,
  });
}

/** A full-tunnel VPN: `.` in its config zones, priority 100. */
const vpn = pvd("vpn.example.com", { dnsZones: ["."], default: true, priority: 100 });

const verdict = (claims: ZoneClaim[], pvdId: string, zone: string) => {
  const c = claims.find((c) => c.pvd === pvdId && c.zone === zone);
  assert.ok(c, `no claim of ${zone} by ${pvdId}`);
  return { accepted: c.accepted, reason: c.reason };
};
const routeOf = (router: Router, qname: string) => {
  const r = router.route({ qname, qtype: 1 });
  return r.kind === "pvd" ? { pvd: r.pvd, step: r.step, zone: r.zone } : { local: r.answer };
};

Deno.test("a public suffix is never accepted from the network", async (t) => {
  const wifi = network("wifi", ["com.", "co.uk.", "github.io.", "corp."], {
    // Even named in acceptZones (the config refuses that; see zone_claims_views_test.ts).
    acceptZones: ["com."],
  });
  await t.step("ICANN section, private section, the default rule: all refused", () => {
    const claims = judgeZoneClaims([wifi]);
    for (const zone of wifi.dnsZones) {
      assert.deepEqual(verdict(claims, "wifi", zone), { accepted: false, reason: "public-suffix" });
    }
  });
  await t.step("with no competing PvD at all, www.bank.com is not wifi's", () => {
    const r = new Router({ pvds: [wifi] });
    assert.deepEqual(routeOf(r, "www.bank.com."), {
      pvd: "wifi",
      step: "default",
      zone: undefined,
    });
    assert.equal(r.longestZone("www.bank.com."), undefined);
  });
  await t.step("the D3 case: wifi's com. does not beat the VPN's .", () => {
    const r = new Router({ pvds: [wifi, vpn] });
    assert.deepEqual(routeOf(r, "www.bank.com."), {
      pvd: "vpn.example.com",
      step: "zone",
      zone: ".",
    });
  });
});

Deno.test("a network zone does not capture names from a higher-priority PvD claiming .", async (t) => {
  const wifi = network("wifi", ["wifi.example."]);
  await t.step("refused against a config . of higher priority", () => {
    const claims = judgeZoneClaims([wifi, vpn]);
    assert.deepEqual(verdict(claims, "wifi", "wifi.example."), {
      accepted: false,
      reason: "full-tunnel",
    });
    assert.equal(claims.find((c) => c.zone === "wifi.example.")?.fullTunnel, "vpn.example.com");
    assert.deepEqual(routeOf(new Router({ pvds: [wifi, vpn] }), "www.wifi.example."), {
      pvd: "vpn.example.com",
      step: "zone",
      zone: ".",
    });
  });
  await t.step("refused against a host link with resolved's ~. (no . among its zones)", () => {
    const tunnel = pvd("implicit:wg0", {
      origin: "host",
      default: true,
      priority: 100,
      rootRoutingDomain: true,
    });
    const lan = pvd("implicit:wlan0", {
      origin: "host",
      dnsZones: ["example.org."],
      searchDomains: ["example.org."],
      default: true,
    });
    const claims = judgeZoneClaims([lan, tunnel]);
    assert.deepEqual(verdict(claims, "implicit:wlan0", "example.org."), {
      accepted: false,
      reason: "full-tunnel",
    });
    assert.equal(claims[0]!.source, "search-domain", "derived from the host origin");
    assert.deepEqual(routeOf(new Router({ pvds: [lan, tunnel] }), "www.example.org."), {
      pvd: "implicit:wg0",
      step: "default",
      zone: undefined,
    });
  });
  await t.step("a . of equal or lower priority leaves the claim alone", () => {
    for (const priority of [0, -5]) {
      const weak = pvd("vpn.example.com", { dnsZones: ["."], default: true, priority });
      assert.deepEqual(verdict(judgeZoneClaims([wifi, weak]), "wifi", "wifi.example."), {
        accepted: true,
        reason: "no-full-tunnel",
      });
    }
  });
  await t.step("a . from the network makes no full tunnel", () => {
    const fake = network("evil", ["."], { priority: 100 });
    const claims = judgeZoneClaims([wifi, fake]);
    assert.deepEqual(verdict(claims, "evil", "."), { accepted: false, reason: "public-suffix" });
    assert.deepEqual(verdict(claims, "wifi", "wifi.example."), {
      accepted: true,
      reason: "no-full-tunnel",
    });
  });
  await t.step("the full-tunnel PvD's own network zones are its own", () => {
    const own = pvd("vpn.example.com", {
      dnsZones: [".", "corp.example."],
      zoneSources: { "corp.example.": "pvd-info" },
      default: true,
      priority: 100,
    });
    assert.deepEqual(verdict(judgeZoneClaims([own]), "vpn.example.com", "corp.example."), {
      accepted: true,
      reason: "no-full-tunnel",
    });
  });
});

Deno.test("acceptZones lets a network zone in, as a name or a suffix", () => {
  const wifi = network("wifi", ["wifi.example.", "eng.corp.example.", "other.example."], {
    acceptZones: ["wifi.example.", "corp.example."],
  });
  const claims = judgeZoneClaims([wifi, vpn]);
  assert.deepEqual(verdict(claims, "wifi", "wifi.example."), {
    accepted: true,
    reason: "accept-zones",
  });
  assert.deepEqual(verdict(claims, "wifi", "eng.corp.example."), {
    accepted: true,
    reason: "accept-zones",
  });
  assert.deepEqual(verdict(claims, "wifi", "other.example."), {
    accepted: false,
    reason: "full-tunnel",
  });
  const r = new Router({ pvds: [wifi, vpn] });
  assert.deepEqual(routeOf(r, "www.wifi.example."), {
    pvd: "wifi",
    step: "zone",
    zone: "wifi.example.",
  });
  assert.deepEqual(routeOf(r, "git.eng.corp.example."), {
    pvd: "wifi",
    step: "zone",
    zone: "eng.corp.example.",
  });
  assert.equal(routeOf(r, "www.other.example.").pvd, "vpn.example.com");
});

Deno.test("private-use zones from the network are accepted, even against a full tunnel", async (t) => {
  const wifi = network("wifi", [
    "home.arpa.",
    "printer.internal.",
    "lan.",
    "1.168.192.in-addr.arpa.", // inside its own prefix
    "168.192.in-addr.arpa.", // the RFC 6303 zone holding its prefix
    "10.in-addr.arpa.", // an RFC 6303 zone, but wifi has no address in 10/8
  ], { prefixes: [cidr("192.168.1.0/24")] });
  const claims = judgeZoneClaims([wifi, vpn]);
  await t.step("private-use names and its own reverse zones", () => {
    for (const zone of wifi.dnsZones.slice(0, 5)) {
      assert.deepEqual(verdict(claims, "wifi", zone), { accepted: true, reason: "private-use" });
    }
  });
  await t.step("another network's RFC 6303 zone is not private to this one", () => {
    assert.deepEqual(verdict(claims, "wifi", "10.in-addr.arpa."), {
      accepted: false,
      reason: "full-tunnel",
    });
  });
  await t.step("the router sends them to wifi", () => {
    const r = new Router({ pvds: [wifi, vpn] });
    assert.equal(routeOf(r, "nas.home.arpa.").pvd, "wifi");
    assert.equal(routeOf(r, "router.lan.").pvd, "wifi");
    assert.equal(routeOf(r, "printer.internal.").pvd, "wifi");
    assert.equal(routeOf(r, "7.1.168.192.in-addr.arpa.").pvd, "wifi");
    // 10/8 reverse names are nobody's: answered here as RFC 6303 says.
    assert.deepEqual(routeOf(r, "1.0.0.10.in-addr.arpa."), { local: "nxdomain" });
  });
});

Deno.test("zones from the config file are always accepted", () => {
  // The administrator wrote them: even com. against a full tunnel.
  const wifi = pvd("wifi", { dnsZones: ["com.", "wifi.example."] });
  const claims = judgeZoneClaims([wifi, vpn]);
  assert.deepEqual(verdict(claims, "wifi", "com."), { accepted: true, reason: "config" });
  assert.deepEqual(verdict(claims, "wifi", "wifi.example."), { accepted: true, reason: "config" });
  assert.deepEqual(routeOf(new Router({ pvds: [wifi, vpn] }), "www.bank.com."), {
    pvd: "wifi",
    step: "zone",
    zone: "com.",
  });
});

Deno.test("without a competing . PvD, network zones route as they always did", () => {
  // A higher-priority default that does not claim . is no full tunnel.
  const cell = pvd("cell", { default: true, priority: 100 });
  const wifi = network("wifi", ["wifi.example.", "example.com."]);
  const claims = judgeZoneClaims([wifi, cell]);
  assert.ok(claims.every((c) => c.accepted && c.reason === "no-full-tunnel"));
  const r = new Router({ pvds: [wifi, cell] });
  assert.deepEqual(routeOf(r, "www.wifi.example."), {
    pvd: "wifi",
    step: "zone",
    zone: "wifi.example.",
  });
  assert.deepEqual(routeOf(r, "www.example.com."), {
    pvd: "wifi",
    step: "zone",
    zone: "example.com.",
  });
  assert.equal(routeOf(r, "www.example.org.").pvd, "cell");
});

Deno.test("host routing domains are the host's, search domains the network's, against a ~. link", () => {
  // The laptop of host_default_test: Wi-Fi is resolved's ~. link (priority 100), the split VPN
  // has the routing domain ~corp.example.com (set by its VPN client) and a DHCP-ish search list.
  const wifi = pvd("implicit:wlan0", {
    origin: "host",
    rootRoutingDomain: true,
    default: true,
    priority: 100,
  });
  const vpnLink = pvd("implicit:tun0", {
    origin: "host",
    dnsZones: ["corp.example.com.", "pushed.example.net."],
    searchDomains: ["pushed.example.net."],
  });
  const claims = judgeZoneClaims([wifi, vpnLink]);
  assert.deepEqual(verdict(claims, "implicit:tun0", "corp.example.com."), {
    accepted: true,
    reason: "host",
  });
  assert.deepEqual(verdict(claims, "implicit:tun0", "pushed.example.net."), {
    accepted: false,
    reason: "full-tunnel",
  });
  const r = new Router({ pvds: [wifi, vpnLink] });
  assert.equal(routeOf(r, "git.corp.example.com.").pvd, "implicit:tun0");
  assert.equal(routeOf(r, "www.pushed.example.net.").pvd, "implicit:wlan0");
});

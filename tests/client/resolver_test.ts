/**
 * The library resolver against a running stub with two PvDs (real dnsmasq upstreams): `{ pvd }`
 * is honoured, failures carry Node's codes, `lookup()` orders by RFC 6724 with the answering
 * PvD's source addresses, `watchPvds()` sees a reload. The same calls are then made from
 * "another process": `connect()` over the control API's Unix socket.
 *
 * @module
 */

import assert from "node:assert/strict";
import { connect, DnsError, PvdResolver } from "../../mod.ts";
import { validateConfig } from "../../src/config/parse.ts";
import { startControl } from "../../src/control/control.ts";
import { createStub } from "../../src/service/stub.ts";
import { startTwoPvds } from "../../testkit/two_pvds.ts";
import type { PvdChange } from "../../src/pvd/pvd_info.ts";

async function rejects(p: Promise<unknown>, code: string, pvd?: string): Promise<DnsError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof DnsError, `expected a DnsError, got ${e}`);
    assert.equal(e.code, code, e.message);
    if (pvd !== undefined) assert.equal(e.pvd, pvd);
    return e;
  }
  assert.fail(`expected ${code}, got an answer`);
}

/** The next change from `it`, at most `ms`. */
async function nextChange(it: AsyncIterator<PvdChange>, ms = 3000): Promise<PvdChange> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const r = await Promise.race([
      it.next(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no PvD change within ${ms} ms`)), ms);
      }),
    ]);
    assert.ok(!r.done, "the watch ended");
    return r.value;
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("PvdResolver: resolves in the PvD asked for, tags answers, fails with Node codes, watches PvDs", async (t) => {
  const f = await startTwoPvds();
  const stub = await createStub(validateConfig(f.config()), { log: () => {} });
  const dir = await Deno.makeTempDir({ prefix: "pvdns-lib-" });
  const control = await startControl(stub, { listen: `unix:${dir}/pvdns.sock` });
  try {
    for (
      const [label, make] of [
        ["in-process", () => new PvdResolver(stub, { timeout: 400 })],
        ["connect() over the Unix socket", () => connect(control.url, { timeout: 400 })],
      ] as const
    ) {
      const r = make();
      try {
        await t.step(`${label}: { pvd } is honoured and answers are tagged`, async () => {
          const home = await r.resolve4("www.home.test", { pvd: "home.example.net" });
          assert.deepEqual([...home], ["192.0.2.1"]);
          assert.equal(home.pvd, "home.example.net");
          // The same name asked in the VPN PvD goes to the VPN's server, which refuses it.
          await rejects(r.resolve4("www.home.test", { pvd: "vpn.example.com" }), "ESERVFAIL");
          const vpn = await r.resolve4("www.corp.test", { pvd: "VPN.example.com." });
          assert.deepEqual([...vpn], ["10.8.1.20"]);
          assert.equal(vpn.pvd, "vpn.example.com");
          // Without a PvD, routing decides (zone corp.test → vpn).
          const routed = await r.resolve6("www.corp.test");
          assert.deepEqual([...routed], ["2001:db8:8::20"]);
          assert.equal(routed.pvd, "vpn.example.com");
          const again = await r.resolve4("www.corp.test", { ttl: true });
          assert.equal(again.source, "cache");
          assert.equal(again[0]!.address, "10.8.1.20");
          assert.ok(again[0]!.ttl > 0 && again[0]!.ttl <= 300);
        });

        await t.step(`${label}: record types in Node's shapes`, async () => {
          const o = { pvd: "home.example.net" };
          assert.deepEqual([...await r.resolveTxt("home.test", o)], [["v=spf1 -all"]]);
          assert.deepEqual([...await r.resolveMx("home.test", o)], [{
            priority: 10,
            exchange: "mail.home.test",
          }]);
          assert.deepEqual([...await r.resolveSrv("_imap._tcp.home.test", o)], [{
            priority: 0,
            weight: 5,
            port: 143,
            name: "mail.home.test",
          }]);
          assert.deepEqual([...await r.resolveCname("alias.home.test", o)], ["www.home.test"]);
          assert.deepEqual([...await r.resolve("www.home.test", "AAAA", o)], ["2001:db8:1::1"]);
          const local = await r.resolve4("localhost");
          assert.deepEqual([...local], ["127.0.0.1"]);
          assert.equal(local.pvd, undefined);
          assert.equal(local.source, "policy");
        });

        await t.step(`${label}: error codes`, async () => {
          await rejects(r.resolve4("nope.home.test"), "ENOTFOUND", "home.example.net");
          await rejects(r.resolveTxt("www.home.test"), "ENODATA", "home.example.net");
          await rejects(r.resolve4("www.home.test", { pvd: "nope.example" }), "EREFUSED");
          await rejects(r.resolve4("other.test", { pvd: "home.example.net" }), "ESERVFAIL");
          await rejects(r.resolve4("a..b"), "EBADNAME");
          // The dead PvD's server never answers: the resolver's 400 ms timeout comes first.
          await rejects(r.resolve4("x.dead.test"), "ETIMEOUT");
          const aborted = new AbortController();
          setTimeout(() => aborted.abort(), 50);
          await rejects(r.resolve4("y.dead.test", { signal: aborted.signal }), "ECANCELLED");
          await rejects(
            r.resolve4("www.home.test", { signal: AbortSignal.abort() }),
            "ECANCELLED",
          );
          const e = await rejects(r.resolve4("nope.home.test"), "ENOTFOUND");
          assert.equal(e.hostname, "nope.home.test");
          assert.equal(e.syscall, "queryA");
        });

        await t.step(
          `${label}: lookup() orders by RFC 6724 with the PvD's source addresses`,
          async () => {
            // home has 127.x (IPv4) and ::1 sources: ::1 is link-local scope with another label,
            // so the IPv4 address, whose source label matches, comes first (rule 5).
            const home = await r.lookup("www.home.test", { pvd: "home.example.net", all: true });
            assert.deepEqual(home, [
              { address: "192.0.2.1", family: 4, source: f.homeSrc, pvd: "home.example.net" },
              { address: "2001:db8:1::1", family: 6, source: "::1", pvd: "home.example.net" },
            ]);
            // vpn has no IPv6 source address: its AAAA is unusable there and comes last.
            const vpn = await r.lookup("www.corp.test", { all: true });
            assert.deepEqual(vpn, [
              { address: "10.8.1.20", family: 4, source: f.vpnSrc, pvd: "vpn.example.com" },
              {
                address: "2001:db8:8::20",
                family: 6,
                source: undefined,
                pvd: "vpn.example.com",
              },
            ]);
            const six = await r.lookup("www.corp.test", { family: 6 });
            assert.equal(six.address, "2001:db8:8::20");
            const one = await r.lookup("www.corp.test");
            assert.equal(one.address, "10.8.1.20");
            assert.equal(one.source, f.vpnSrc);
            await rejects(r.lookup("nope.corp.test"), "ENOTFOUND");
          },
        );

        await t.step(`${label}: listPvds() and getPvd()`, async () => {
          const ids = (await r.listPvds()).map((p) => p.id);
          assert.deepEqual(ids, ["home.example.net", "vpn.example.com", "dead.example.org"]);
          const vpn = await r.getPvd("VPN.example.com");
          assert.deepEqual(vpn, {
            id: "vpn.example.com",
            implicit: false,
            origin: "config",
            interface: "lo",
            prefixes: ["10.8.0.0/16"],
            sourceAddresses: [f.vpnSrc],
            servers: [f.vpnSrv, `tcp://${f.vpnSrv}`],
            dnsZones: ["corp.test."],
            searchDomains: [],
            default: false,
            priority: 0,
            strictRoutes: false,
            zones: [{
              zone: "corp.test.",
              source: "config",
              accepted: true,
              reason: "config",
              detail: "written in the config file",
            }],
          });
          assert.equal(await r.getPvd("nope.example"), undefined);
        });

        await t.step(`${label}: watchPvds() sees a reload; return() unsubscribes`, async () => {
          const watch = r.watchPvds({ initial: true });
          const initial = [
            await nextChange(watch),
            await nextChange(watch),
            await nextChange(watch),
          ];
          assert.deepEqual(initial.map((c) => [c.type, c.pvd.id]), [
            ["added", "home.example.net"],
            ["added", "vpn.example.com"],
            ["added", "dead.example.org"],
          ]);
          await stub.reload(validateConfig(f.config({}, { withoutVpn: true })));
          const removed = await nextChange(watch);
          assert.equal(removed.type, "removed");
          assert.equal(removed.pvd.id, "vpn.example.com");
          await rejects(r.resolve4("www.corp.test", { pvd: "vpn.example.com" }), "EREFUSED");
          await stub.reload(validateConfig(f.config()));
          const added = await nextChange(watch);
          assert.deepEqual([added.type, added.pvd.id], ["added", "vpn.example.com"]);
          assert.deepEqual(await watch.return!(), { value: undefined, done: true });
          assert.deepEqual(await watch.next(), { value: undefined, done: true });
        });
      } finally {
        await r.close();
      }
    }
  } finally {
    await control.close();
    await stub.close();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    await f.stop();
  }
});

Deno.test("PvdResolver: cancel() fails calls in flight with ECANCELLED; reverse() builds the PTR name", async () => {
  const f = await startTwoPvds();
  const stub = await createStub(validateConfig(f.config()), { log: () => {} });
  const r = new PvdResolver(stub);
  try {
    const pending = r.resolve4("z.dead.test");
    setTimeout(() => r.cancel(), 50);
    await rejects(pending, "ECANCELLED");
    // 10.8.0.5 is inside vpn's prefix: its reverse zone goes to vpn, whose server has no such zone.
    const e = await rejects(r.reverse("10.8.0.5"), "ESERVFAIL", "vpn.example.com");
    assert.equal(e.syscall, "getHostByAddr");
    await assert.rejects(r.reverse("not-an-ip"), TypeError);
    // A private reverse name no PvD owns is answered here (RFC 6303): NXDOMAIN.
    await rejects(r.reverse("192.168.1.1"), "ENOTFOUND");
  } finally {
    await stub.close();
    await f.stop();
  }
});

/**
 * Hot reload under a running pvdns: edit the config file and send SIGHUP. A valid change takes
 * effect without dropping queries and flushes only the PvDs that changed; an invalid one is
 * refused with its errors while the old config keeps answering.
 *
 * @module
 */

import assert from "node:assert/strict";
import { dig } from "../../testkit/dig.ts";
import { startDnsmasq } from "../../testkit/dnsmasq.ts";
import { loopbackAddress } from "../../testkit/loopback.ts";
import { startPvdns } from "../../testkit/pvdns_process.ts";
import { buildQuery } from "../../testkit/wire.ts";

/** Sends queries one after another until stopped; counts the ones that got no answer. */
function steadyClient(server: string, name: string) {
  let stop = false;
  let sent = 0, lost = 0;
  const done = (async () => {
    const sock = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
    try {
      for (let i = 0; !stop && i < 5000; i++) {
        await sock.send(buildQuery(i & 0xffff, name), {
          hostname: server,
          port: 53,
          transport: "udp",
        });
        sent++;
        const got = await Promise.race([
          sock.receive().then(() => true),
          new Promise<false>((r) => setTimeout(() => r(false), 1000)),
        ]);
        if (!got) lost++;
        await new Promise((r) => setTimeout(r, 5));
      }
    } finally {
      sock.close();
    }
  })();
  return {
    async finish() {
      stop = true;
      await done.catch(() => {});
      return { sent, lost };
    },
  };
}

Deno.test("config reload: valid edits apply without losing queries, invalid ones are refused", async (t) => {
  const [homeSrv, vpnOld, vpnNew] = [loopbackAddress(), loopbackAddress(), loopbackAddress()];
  const [homeSrc, vpnSrc, listen] = [
    loopbackAddress({ port: 0 }),
    loopbackAddress({ port: 0 }),
    loopbackAddress(),
  ];
  const home = await startDnsmasq({
    address: homeSrv,
    zones: ["home.test"],
    records: [{ name: "www.home.test", type: "A", value: "192.0.2.1" }],
  });
  const oldVpn = await startDnsmasq({
    address: vpnOld,
    zones: ["corp.test"],
    records: [{ name: "www.corp.test", type: "A", value: "10.1.0.1" }],
  });
  const newVpn = await startDnsmasq({
    address: vpnNew,
    zones: ["corp.test"],
    records: [{ name: "www.corp.test", type: "A", value: "10.2.0.2" }],
  });
  const config = (vpnServer: string) => ({
    listen: [`${listen}:53`],
    pvds: [
      {
        id: "home.example",
        sourceAddresses: [homeSrc],
        servers: [homeSrv],
        dnsZones: ["home.test"],
        default: true,
      },
      {
        id: "vpn.example",
        sourceAddresses: [vpnSrc],
        servers: [vpnServer],
        dnsZones: ["corp.test"],
      },
    ],
  });
  const pvdns = await startPvdns({ config: config(vpnOld) });
  const path = pvdns.configPath!;
  try {
    const a = (name: string) =>
      dig({ server: listen, name }).then((r) => r.answers.map((x) => x.data));
    assert.deepEqual(await a("www.home.test"), ["192.0.2.1"]);
    assert.deepEqual(await a("www.corp.test"), ["10.1.0.1"]);
    const steady = steadyClient(listen, "www.home.test");

    await t.step("an edited file is picked up: the changed PvD asks its new server", async () => {
      await Deno.writeTextFile(path, JSON.stringify(config(vpnNew)));
      await pvdns.waitForLine(/pvdns: reloaded .*changed vpn\.example/);
      assert.deepEqual(await a("www.corp.test"), ["10.2.0.2"], "vpn's cache was flushed");
      assert.equal((await home.queryLog()).length, 1, "home's cache survived the reload");
      assert.deepEqual(await a("www.home.test"), ["192.0.2.1"]);
    });

    await t.step(
      "an invalid file is refused with its errors; the old config keeps answering",
      async () => {
        await Deno.writeTextFile(
          path,
          `{ "pvds": [ { "id": "vpn.example", "servers": ["300.1.1.1"] } ], "bogus": 1 }`,
        );
        const line = await pvdns.waitForLine(/reload of .* refused/);
        assert.match(line, /still serving the previous config/);
        await pvdns.waitForLine(/"300\.1\.1\.1" is not an IP address/);
        await pvdns.waitForLine(/bogus: unknown key/);
        assert.deepEqual(await a("www.corp.test"), ["10.2.0.2"]);
      },
    );

    await t.step("SIGHUP reloads a repaired file", async () => {
      // Written while the watch is told nothing new, then SIGHUP: both paths lead to one reload.
      await Deno.writeTextFile(path, JSON.stringify(config(vpnOld)));
      pvdns.signal("SIGHUP");
      await pvdns.waitForLine(
        /pvdns: reloaded .*\(SIGHUP\)|pvdns: reloaded .*changed vpn\.example.*\n?/,
      );
      await pvdns.waitForLine(/reloaded .*changed vpn\.example/);
      const r = await dig({ server: listen, name: "www.corp.test" });
      assert.deepEqual(r.answers.map((x) => x.data), ["10.1.0.1"]);
    });

    const { sent, lost } = await steady.finish();
    assert.ok(sent > 20, `the steady client ran (${sent} queries)`);
    assert.equal(lost, 0, `no query was lost during the reloads (${sent} sent)`);
    assert.ok((await oldVpn.queryLog()).every((q) => q.from === vpnSrc));
    assert.ok((await newVpn.queryLog()).every((q) => q.from === vpnSrc));
  } finally {
    await pvdns.stop();
    await home.stop();
    await oldVpn.stop();
    await newVpn.stop();
  }
});

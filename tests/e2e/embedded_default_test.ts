/**
 * The embedded default (no `--config`), as `deno task start` runs it: inside a network namespace
 * whose `/etc/netns/NS/resolv.conf` names pvdns's own stub address and a dnsmasq the test started.
 * pvdns must drop its own address (no loop), forward to the other server from the PvD of the
 * interface the kernel reaches it through, listen on 127.0.0.53:53, and fall back to an
 * unprivileged port (saying so) when 127.0.0.53:53 is taken.
 *
 * @module
 */

import assert from "node:assert/strict";
import { dig } from "../../testkit/dig.ts";
import { startDnsmasq } from "../../testkit/dnsmasq.ts";
import { createNetns, writeNetnsResolvConf } from "../../testkit/netns.ts";
import { startPvdns } from "../../testkit/pvdns_process.ts";

Deno.test("pvdns serve without --config builds its PvDs from the host's resolv.conf", async (t) => {
  const ns = await createNetns({ prefix: "emb" });
  const upstream = "127.77.0.1";
  const dns = await startDnsmasq({
    address: upstream,
    netns: ns.name,
    zones: ["host.test"],
    records: [{ name: "www.host.test", type: "A", value: "198.51.100.7" }],
  });
  try {
    await writeNetnsResolvConf(
      ns.name,
      `nameserver 127.0.0.53\nnameserver ${upstream}\nsearch host.test\n`,
    );

    await t.step(
      "listens on 127.0.0.53:53 and forwards to the resolv.conf server, not itself",
      async () => {
        const pvdns = await startPvdns({ netns: ns.name });
        try {
          const out = pvdns.output().join("\n");
          assert.match(out, /PvD implicit:lo \(default\): servers 127\.77\.0\.1 from /);
          assert.doesNotMatch(
            out,
            /servers [^\n]*127\.0\.0\.53/,
            "its own address is not an upstream",
          );
          assert.deepEqual(pvdns.listeners(), ["127.0.0.53:53"]);
          const r = await dig({ server: "127.0.0.53", name: "www.host.test", netns: ns.name });
          assert.equal(r.status, "NOERROR");
          assert.deepEqual(r.answers.map((a) => a.data), ["198.51.100.7"]);
          const log = await dns.queryLog();
          assert.equal(log.length, 1);
          assert.equal(log[0]!.name, "www.host.test");
        } finally {
          await pvdns.stop();
        }
      },
    );

    await t.step(
      "falls back to an unprivileged port when 127.0.0.53:53 is taken, and says so",
      async () => {
        const squatter = await startDnsmasq({ address: "127.0.0.53", netns: ns.name, records: [] });
        try {
          const pvdns = await startPvdns({ netns: ns.name });
          try {
            assert.ok(
              pvdns.output().some((l) =>
                /cannot bind 127\.0\.0\.53:53 .*using port 5053 instead/.test(l)
              ),
              pvdns.output().join("\n"),
            );
            assert.deepEqual(pvdns.listeners(), ["127.0.0.53:5053"]);
            const r = await dig({
              server: "127.0.0.53",
              port: 5053,
              name: "www.host.test",
              netns: ns.name,
            });
            assert.deepEqual(r.answers.map((a) => a.data), ["198.51.100.7"]);
          } finally {
            await pvdns.stop();
          }
        } finally {
          await squatter.stop();
        }
      },
    );
  } finally {
    await dns.stop();
    await ns.delete();
  }
});

Deno.test("host discovery while running: a resolv.conf change moves the host PvD to the new server", async () => {
  const ns = await createNetns({ prefix: "hw" });
  const [first, second] = ["127.78.0.1", "127.78.0.2"];
  const one = await startDnsmasq({
    address: first,
    netns: ns.name,
    zones: ["host.test"],
    records: [{ name: "www.host.test", type: "A", value: "198.51.100.1" }],
  });
  const two = await startDnsmasq({
    address: second,
    netns: ns.name,
    zones: ["host.test"],
    records: [{ name: "www.host.test", type: "A", value: "198.51.100.2" }],
  });
  try {
    await writeNetnsResolvConf(ns.name, `nameserver ${first}\n`);
    const pvdns = await startPvdns({ netns: ns.name });
    try {
      const ask = async () =>
        (await dig({ server: "127.0.0.53", name: "www.host.test", netns: ns.name })).answers.map((
          a,
        ) => a.data);
      assert.deepEqual(await ask(), ["198.51.100.1"]);
      // Written in place: `ip netns exec` bind-mounts this very file over /etc/resolv.conf.
      await writeNetnsResolvConf(ns.name, `nameserver ${second}\n`);
      await pvdns.waitForLine(/PvD implicit:lo changed \(host\)/, 20_000);
      assert.deepEqual(await ask(), ["198.51.100.2"], "the changed PvD's cache was flushed");
      assert.equal((await one.queryLog()).length, 1, "the old server was not asked again");
    } finally {
      await pvdns.stop();
    }
  } finally {
    await one.stop();
    await two.stop();
    await ns.delete();
  }
});

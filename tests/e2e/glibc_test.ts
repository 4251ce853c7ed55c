/**
 * glibc as the client (issue 2, "glibc"): inside a fresh network namespace, pvdns listens on a
 * loopback address, its one PvD forwards to a dnsmasq on another loopback address of the same
 * namespace, and `/etc/netns/NS/resolv.conf` names pvdns. `getent ahosts NAME` — glibc's
 * getaddrinfo, which sends the A and AAAA queries together on one socket — must get both.
 *
 * The namespace gets a ULA on `lo` (`dualStack`) so that glibc's AI_ADDRCONFIG asks for AAAA
 * at all; nothing in it reaches outside the namespace.
 *
 * @module
 */

import assert from "node:assert/strict";
import { dig } from "../../testkit/dig.ts";
import { startDnsmasq } from "../../testkit/dnsmasq.ts";
import { loopbackAddress } from "../../testkit/loopback.ts";
import { createNetns, writeNetnsResolvConf } from "../../testkit/netns.ts";
import { startPvdns } from "../../testkit/pvdns_process.ts";

Deno.test("glibc getent ahosts resolves A and AAAA through pvdns in a netns", async (t) => {
  const ns = await createNetns({ dualStack: true });
  try {
    // Addresses are per namespace; the allocator still keeps them distinct and readable.
    const upstream = loopbackAddress({ port: 0 });
    const source = loopbackAddress({ port: 0 });
    const listen = loopbackAddress({ port: 0 });
    const dns = await startDnsmasq({
      address: upstream,
      netns: ns.name,
      zones: ["glibc.test"],
      records: [
        { name: "both.glibc.test", type: "A", value: "10.4.0.1" },
        { name: "both.glibc.test", type: "AAAA", value: "fd04::1" },
        { name: "v4only.glibc.test", type: "A", value: "10.4.0.2" },
      ],
    });
    try {
      const pvdns = await startPvdns({
        netns: ns.name,
        config: {
          listen: [`${listen}:53`],
          pvds: [{
            id: "lan.example",
            sourceAddresses: [source],
            servers: [upstream],
            dnsZones: ["glibc.test"],
            default: true,
          }],
        },
      });
      try {
        await writeNetnsResolvConf(
          ns.name,
          `# written by tests/e2e/glibc_test.ts\nnameserver ${listen}\noptions timeout:2 attempts:2\n`,
        );

        await t.step("getent ahosts gets both the A and the AAAA", async () => {
          const r = await ns.exec(["getent", "ahosts", "both.glibc.test"], { timeoutMs: 15_000 });
          assert.equal(r.code, 0, `getent exit ${r.code}: ${r.stdout}${r.stderr}`);
          assert.match(r.stdout, /^10\.4\.0\.1\s+STREAM/m);
          assert.match(r.stdout, /^fd04::1\s/m);
        });

        await t.step("the upstream saw A and AAAA, from the PvD's source address", async () => {
          const log = (await dns.queryLog()).filter((e) => e.name === "both.glibc.test");
          assert.deepEqual(new Set(log.map((e) => e.type)), new Set(["A", "AAAA"]));
          for (const e of log) assert.equal(e.from, source, e.line);
        });

        await t.step("a second lookup is served from pvdns's cache", async () => {
          const before = (await dns.queryLog()).length;
          const r = await ns.exec(["getent", "ahosts", "both.glibc.test"], { timeoutMs: 15_000 });
          assert.equal(r.code, 0);
          assert.match(r.stdout, /^fd04::1\s/m);
          assert.equal((await dns.queryLog()).length, before);
        });

        await t.step("a name with A only, and an unknown name", async () => {
          const v4 = await ns.exec(["getent", "ahosts", "v4only.glibc.test"], {
            timeoutMs: 15_000,
          });
          assert.equal(v4.code, 0, v4.stdout + v4.stderr);
          assert.match(v4.stdout, /^10\.4\.0\.2\s/m);
          assert.doesNotMatch(v4.stdout, /:/);
          const none = await ns.exec(["getent", "ahosts", "missing.glibc.test"], {
            timeoutMs: 15_000,
          });
          assert.equal(none.code, 2, `getent exit ${none.code} for an unknown name`);
        });

        await t.step("pvdns inside the namespace is not reachable from outside", async () => {
          const r = await dig({ server: listen, name: "both.glibc.test", timeSeconds: 1 });
          assert.equal(r.status, "TIMEOUT");
        });
      } finally {
        await pvdns.stop();
      }
    } finally {
      await dns.stop();
    }
  } finally {
    await ns.delete();
  }
});

/**
 * A PvD learned from the network, used by the running daemon (issue 5 end to end): `pvdns serve`
 * in a "host" namespace with `discovery.ra` on its link to a "router" namespace. The router sends
 * real RAs with a PvD option (H=1) carrying a PIO, RDNSS and DNSSL, serves the PvD's zones with
 * dnsmasq and `/.well-known/pvd` over HTTPS with a test CA. pvdns must discover the PvD, fetch
 * its additional information from the PvD's own address, then route the `dnsZones` of that
 * information to the PvD's RDNSS — shown by dig through pvdns — and list the PvD with its origin
 * and additional information through `pvdns pvds`.
 *
 * @module
 */

import assert from "node:assert/strict";
import { dig } from "../../testkit/dig.ts";
import { runPvdns, startPvdns } from "../../testkit/pvdns_process.ts";
import { pvdRa } from "../../testkit/ra_frames.ts";
import { sendRa } from "../../testkit/ra_sender.ts";
import { HOST_ADDR, ID, type RaTestbed, startRaTestbed } from "../../testkit/ra_testbed.ts";

Deno.test({
  name: "e2e: pvdns serve learns a PvD from RAs and routes its dnsZones to its RDNSS",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    let bed: RaTestbed | undefined;
    try {
      bed = await startRaTestbed({
        prefixes: ["psr", "psh"],
        zones: ["example.com", "corp.example"],
        records: [{ name: "www.corp.example", type: "AAAA", value: "2001:db8:cafe::80" }],
        document: { prefixes: ["2001:db8:cafe::/48"], dnsZones: ["corp.example"] },
      });
      const { router, host, veth, ca, dns, https } = bed;

      const socket = `${ca.dir}/pvdns.sock`;
      const pvdns = await startPvdns({
        netns: host.name,
        config: {
          listen: ["127.0.0.53:53"],
          control: { listen: `unix:${socket}` },
          caFile: ca.caFile,
          discovery: { ra: [veth.b] },
          pvds: [],
        },
      });
      bed.defer(() => pvdns.stop());

      await t.step(
        "the PvD is discovered and its zones learned from /.well-known/pvd",
        async () => {
          // Routers repeat their RAs; so does the test until pvdns has the PvD.
          for (let i = 0; i < 10; i++) {
            await sendRa(router.name, veth.a, "fe80::1", pvdRa(ID, 1));
            if (pvdns.output().some((l) => l.includes(`PvD ${ID} added (ra)`))) break;
            await new Promise((r) => setTimeout(r, 500));
          }
          await pvdns.waitForLine(new RegExp(`PvD ${ID} (added|changed) \\(ra\\)`), 10_000);
          await pvdns.waitForLine(/zones corp\.example\./, 15_000);
          const req = https.lines.find((l) => l.request)?.request as Record<string, string>;
          assert.equal(req.from, HOST_ADDR, "fetched from the PvD's own address");
        },
      );

      await t.step(
        "dig through pvdns: the PvD's zone goes to its RDNSS, from its address",
        async () => {
          const r = await dig({
            server: "127.0.0.53",
            name: "www.corp.example",
            type: "AAAA",
            netns: host.name,
          });
          assert.equal(r.status, "NOERROR", r.raw);
          assert.deepEqual(r.answers.map((a) => a.data), ["2001:db8:cafe::80"]);
          const q = await dns.waitForQuery((q) => q.name === "www.corp.example");
          assert.equal(q.from.replace(/#\d+$/, ""), HOST_ADDR);
        },
      );

      await t.step("pvdns pvds lists it with its origin and additional information", async () => {
        const r = await runPvdns(["pvds", "--json", "--control", `unix:${socket}`], {
          netns: host.name,
        });
        assert.equal(r.code, 0, r.stderr);
        const out = JSON.parse(r.stdout);
        const list = (Array.isArray(out) ? out : out.pvds) as {
          id: string;
          origin: string;
          additionalInfo?: { identifier: string; dnsZones?: string[] };
        }[];
        const p = list.find((x) => x.id === ID);
        assert.ok(p, r.stdout);
        assert.equal(p.origin, "ra");
        assert.equal(p.additionalInfo?.identifier, ID);
        assert.deepEqual(p.additionalInfo?.dnsZones, ["corp.example."]);
      });
    } catch (e) {
      if (bed) console.error(`https stderr:\n${bed.https.stderr()}`);
      throw e;
    } finally {
      await bed?.close();
    }
  },
});

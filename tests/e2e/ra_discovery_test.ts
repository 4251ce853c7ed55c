/**
 * RA discovery end to end, on a real link between two network namespaces:
 *
 * ```
 *  router ns  veth ─────────────── veth  host ns
 *   fe80::1            (RAs)            2001:db8:cafe::100/64 (added by the test)
 *   2001:db8:cafe::53  dnsmasq, authoritative for example.com (pvd.example.com AAAA ::443)
 *   2001:db8:cafe::443 HTTPS /.well-known/pvd (test CA)    startRaDiscovery (runner script)
 * ```
 *
 * The router sends real RAs from a raw socket (Python, hop limit 255, source fe80::1), each
 * carrying a PvD option (pvd.example.com, H=1) with a PIO, RDNSS and DNSSL inside it. A stock
 * kernel ignores everything inside a PvD option (no SLAAC from an embedded PIO), so the host's
 * address in the prefix is added by the test (`ip addr add … nodad`), and `accept_ra` is 0 on
 * the host side: the kernel learns nothing, pvdns learns everything from its own raw socket.
 *
 * Asserted: RAs with hop limit 64 or a global source are dropped (what the FFI socket reports
 * of real packets); the PvD is published with its prefix, RDNSS, DNSSL and source address; its ID is
 * looked up at its own RDNSS from that address and the JSON is fetched from that address, then
 * its `dnsZones` are published; an RA with RDNSS lifetime 0 removes the server; a new sequence
 * number refetches (after the 10 s per-PvD minimum); a JSON whose `prefixes` do not cover the
 * RA's prefix is not used and the PvD stays, without additional information.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { PvdConfig } from "../../src/config/types.ts";
import { sleep } from "../../testkit/exec.ts";
import { type JsonLinesProcess, startJsonLines } from "../../testkit/json_lines_process.ts";
import { pvdDocument, pvdRa } from "../../testkit/ra_frames.ts";
import { sendRa } from "../../testkit/ra_sender.ts";
import {
  DENO_JSON,
  HOST_ADDR,
  ID,
  type RaTestbed,
  startRaTestbed,
  support,
} from "../../testkit/ra_testbed.ts";

const ra = (seq: number, rdnssLifetime = 1800) => pvdRa(ID, seq, rdnssLifetime);
const doc = (prefixes: string[], dnsZones: string[]) => pvdDocument(ID, prefixes, dnsZones);

type Line = Record<string, unknown>;
const published = (l: Line) => l.publish as PvdConfig[] | undefined;
const pvdIn = (l: Line) => published(l)?.find((p) => p.id === ID);

Deno.test({
  name: "e2e: RA discovery in a network namespace: PvD option, RDNSS, DNSSL, /.well-known/pvd",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    let bed: RaTestbed | undefined;
    let runner: JsonLinesProcess | undefined;
    try {
      bed = await startRaTestbed({
        prefixes: ["pvr", "pvh"],
        routerAddresses: ["2001:db8:cafe::1/64"],
        zones: ["example.com"],
        document: { prefixes: ["2001:db8:cafe::/48"], dnsZones: ["corp.example"] },
      });
      const { router, host, veth, ca, docFile, dns, https } = bed;

      const started = Date.now();
      runner = startJsonLines([
        Deno.execPath(),
        "run",
        "-A",
        "--unstable-net",
        "--config",
        DENO_JSON,
        support("ra_discovery_runner.ts"),
        "--iface",
        veth.b,
        "--ca-file",
        ca.caFile,
      ], host.name); // deno-fmt-ignore
      bed.defer(() => runner!.stop());
      const r = runner;
      await r.waitFor((l) => String(l.log ?? "").startsWith("listening for router"), {
        what: "the RA socket",
      });

      /** Sends `payload` until a new line matches (RAs are resent, as routers do). */
      const sendUntil = async (payload: Uint8Array, pred: (l: Line) => boolean, what: string) => {
        const from = r.lines.length;
        for (let i = 0; i < 5; i++) {
          await sendRa(router.name, veth.a, "fe80::1", payload);
          try {
            return await r.waitFor(pred, { from, timeoutMs: 2000, what });
          } catch { /* resend */ }
        }
        return await r.waitFor(pred, { from, timeoutMs: 1000, what });
      };
      const requests = () =>
        https.lines.filter((l) => l.request).map((l) => l.request as Record<string, string>);

      await t.step("RAs with hop limit 64, or from a global address, are dropped", async () => {
        const from = r.lines.length;
        await sendRa(router.name, veth.a, "fe80::1", ra(1), 64);
        await r.waitFor((l) => String(l.log ?? "").includes("hop limit 64, not 255"), {
          from,
          what: "the hop limit check",
        });
        await sendRa(router.name, veth.a, "2001:db8:cafe::1", ra(1));
        await r.waitFor((l) => String(l.log ?? "").includes("source is not link-local"), {
          from,
          what: "the source check",
        });
        assert.ok(!r.lines.some((l) => published(l)), "nothing published");
      });

      await t.step("the PvD appears with its prefix, RDNSS, DNSSL and source address", async () => {
        const line = await sendUntil(ra(1), (l) => pvdIn(l) !== undefined, "the PvD");
        const p = pvdIn(line)!;
        assert.equal(p.origin, "ra");
        assert.equal(p.implicit, false);
        assert.equal(p.interface, veth.b);
        assert.deepEqual(p.prefixes.map((c) => c.text), ["2001:db8:cafe::/64"]);
        assert.deepEqual(p.servers.map((s) => [s.protocol, s.address, s.port]), [
          ["udp", "2001:db8:cafe::53", 53],
        ]);
        assert.deepEqual(p.searchDomains, ["example.com."]);
        assert.deepEqual(p.sourceAddresses, [HOST_ADDR]);
        assert.equal(p.default, true);
      });

      await t.step("its additional information is fetched from its source address", async () => {
        const line = await r.waitFor((l) => pvdIn(l)?.additionalInfo !== undefined, {
          what: "additional information",
        });
        const p = pvdIn(line)!;
        // The information's zone, then the DNSSL domain (a zone too, marked as the network's).
        assert.deepEqual(p.dnsZones, ["corp.example.", "example.com."]);
        assert.deepEqual(p.zoneSources, { "corp.example.": "pvd-info", "example.com.": "dnssl" });
        assert.equal(p.additionalInfo!.identifier, ID);
        const reqs = requests();
        assert.equal(reqs.length, 1);
        assert.equal(reqs[0]!.from, HOST_ADDR);
        assert.equal(reqs[0]!.path, "/.well-known/pvd");
        assert.equal(reqs[0]!.host, ID);
        assert.equal(reqs[0]!.accept, "application/pvd+json");
        assert.equal(reqs[0]!.userAgent, null);
        // The PvD ID was looked up at the PvD's own RDNSS, from the PvD's address.
        const q = await dns.waitForQuery((q) => q.name.toLowerCase() === ID && q.type === "AAAA");
        assert.equal(q.from.replace(/#\d+$/, ""), HOST_ADDR);
      });

      await t.step("an RA with RDNSS lifetime 0 removes the server", async () => {
        const line = await sendUntil(
          ra(1, 0),
          (l) => pvdIn(l)?.servers.length === 0,
          "the server removed",
        );
        const p = pvdIn(line)!;
        assert.deepEqual(p.prefixes.map((c) => c.text), ["2001:db8:cafe::/64"], "the PvD stays");
        assert.ok(p.additionalInfo, "same sequence number: the information stays");
        assert.equal(requests().length, 1);
      });

      await t.step("a new sequence number triggers a refetch", async () => {
        await Deno.writeTextFile(docFile, doc(["2001:db8:cafe::/48"], ["corp2.example"]));
        const from = r.lines.length;
        await sendUntil(
          ra(2),
          (l) => pvdIn(l) !== undefined && pvdIn(l)!.additionalInfo === undefined,
          "the information deprecated",
        );
        const line = await r.waitFor(
          (l) => pvdIn(l)?.dnsZones.includes("corp2.example.") === true,
          { from, timeoutMs: 20_000, what: "the refetched information" },
        );
        assert.ok(pvdIn(line)!.servers.length === 1, "the RA brought the server back");
        const reqs = requests();
        assert.equal(reqs.length, 2);
        assert.ok(reqs.every((q) => q.from === HOST_ADDR));
        assert.ok(Date.now() - started >= 10_000, "at least 10 s after the first fetch");
      });

      await t.step("a JSON whose prefixes do not cover the RA's prefix is ignored", async () => {
        await Deno.writeTextFile(docFile, doc(["2001:db8:f00d::/48"], ["evil.example"]));
        const from = r.lines.length;
        await sendUntil(
          ra(3),
          (l) => pvdIn(l) !== undefined && pvdIn(l)!.additionalInfo === undefined,
          "the information deprecated",
        );
        await r.waitFor((l) => String(l.log ?? "").includes("do not cover"), {
          from,
          timeoutMs: 20_000,
          what: "the invalid object",
        });
        assert.equal(requests().length, 3);
        await sleep(300);
        const last = [...r.lines].reverse().find((l) => published(l))!;
        const p = pvdIn(last)!;
        assert.equal(p.additionalInfo, undefined);
        assert.deepEqual(p.dnsZones, ["example.com."], "only the DNSSL domain: no evil.example.");
        assert.equal(p.servers.length, 1, "the PvD stays usable");
      });
      console.log(`RA discovery e2e: ${((Date.now() - started) / 1000).toFixed(1)} s`);
    } catch (e) {
      if (runner) console.error(`runner stderr:\n${runner.stderr()}`);
      if (bed) console.error(`https stderr:\n${bed.https.stderr()}`);
      throw e;
    } finally {
      await bed?.close();
    }
  },
});

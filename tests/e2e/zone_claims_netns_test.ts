/**
 * Who may claim a zone, on real links (NEXT-FEATURES D3): `pvdns serve` in a host namespace with
 * two links. A router namespace sends real RAs whose DNSSL holds `com`, `wifi.example` and `lan`
 * (its RDNSS, dnsmasq, answers all three); a VPN namespace has the config's full-tunnel PvD
 * (`.`, priority 100) with its own dnsmasq. tcpdump on the host end of each link shows where each
 * query went:
 *
 * - `www.bank.com` only on the VPN link (the network's `com.` is a public suffix: refused);
 * - `router.lan` only on the Wi-Fi link (private-use: accepted against the full tunnel);
 * - `www.wifi.example` on the VPN link (it would capture the VPN's names: refused), then, once a
 *   config reload gives the Wi-Fi `discovery.pvdOptions` acceptZones `wifi.example`, on the Wi-Fi
 *   link; an acceptZones naming `com` is a config error and the reload is refused.
 *
 * `pvdns pvds`, `pvdns route --daemon` and `/metrics` show the same verdicts.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type Capture, type CapturedPacket, startCapture } from "../../testkit/capture.ts";
import { dig } from "../../testkit/dig.ts";
import { startDnsmasq } from "../../testkit/dnsmasq.ts";
import { exec } from "../../testkit/exec.ts";
import { createNetns, createVethPair } from "../../testkit/netns.ts";
import { runPvdns, startPvdns } from "../../testkit/pvdns_process.ts";
import { pvdRa } from "../../testkit/ra_frames.ts";
import { sendRa } from "../../testkit/ra_sender.ts";
import { ID, type RaTestbed, startRaTestbed } from "../../testkit/ra_testbed.ts";

/** The query name of a DNS message (UDP payload), lower case with a trailing dot. */
function questionName(payload: Uint8Array): string | undefined {
  if (payload.length < 13) return undefined;
  const labels: string[] = [];
  for (let i = 12; i < payload.length;) {
    const n = payload[i]!;
    if (n === 0) return `${labels.join(".")}.`.toLowerCase();
    if (n > 63 || i + 1 + n > payload.length) return undefined;
    labels.push(new TextDecoder().decode(payload.subarray(i + 1, i + 1 + n)));
    i += 1 + n;
  }
  return undefined;
}

/** Queries (not answers) for `name` among `packets`, sent from the host's side. */
const queriesFor = (packets: CapturedPacket[], name: string) =>
  packets.filter((p) =>
    p.dport === 53 && p.payload.length > 2 && (p.payload[2]! & 0x80) === 0 &&
    questionName(p.payload) === name
  ).length;

Deno.test({
  name: "e2e: DNSSL zones against a full-tunnel VPN: com. refused, lan. to Wi-Fi, " +
    "wifi.example. to Wi-Fi only once acceptZones names it",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    let bed: RaTestbed | undefined;
    let daemonOutput: (() => string[]) | undefined;
    try {
      bed = await startRaTestbed({
        prefixes: ["pzr", "pzh"],
        // example.com: the PvD ID's AAAA record, looked up at this RDNSS.
        zones: ["example.com", "lan", "wifi.example", "bank.com"],
        records: [
          { name: "router.lan", type: "A", value: "198.51.100.1" },
          { name: "www.wifi.example", type: "A", value: "198.51.100.81" },
          // What a hostile network would answer, were it asked.
          { name: "www.bank.com", type: "A", value: "198.51.100.66" },
        ],
        document: { prefixes: ["2001:db8:cafe::/48"], dnsZones: [] },
      });
      const { router, host, veth, ca } = bed;

      const vpnNs = await createNetns({ prefix: "pzv" });
      bed.defer(() => vpnNs.delete());
      const vpnLink = await createVethPair(
        { netns: vpnNs.name, addresses: ["10.8.0.1/24"] },
        { netns: host.name, addresses: ["10.8.0.2/24"] },
      );
      bed.defer(() => vpnLink.delete());
      const vpnDns = await startDnsmasq({
        address: "10.8.0.1",
        netns: vpnNs.name,
        zones: ["bank.com", "wifi.example"],
        records: [
          { name: "www.bank.com", type: "A", value: "192.0.2.80" },
          { name: "www.wifi.example", type: "A", value: "192.0.2.81" },
        ],
      });
      bed.defer(() => vpnDns.stop());

      const socket = `${ca.dir}/pvdns.sock`;
      const control = ["--control", `unix:${socket}`];
      const config = (acceptZones?: string[]) => ({
        listen: ["127.0.0.53:53"],
        control: { listen: `unix:${socket}` },
        caFile: ca.caFile,
        discovery: {
          ra: [veth.b],
          ...(acceptZones ? { pvdOptions: [{ interface: veth.b, acceptZones }] } : {}),
        },
        pvds: [{
          id: "vpn.example.com",
          interface: vpnLink.b,
          sourceAddresses: ["10.8.0.2"],
          servers: ["10.8.0.1"],
          dnsZones: ["."],
          default: true,
          priority: 100,
        }],
      });
      const pvdns = await startPvdns({ netns: host.name, config: config() });
      bed.defer(() => pvdns.stop());
      daemonOutput = pvdns.output;

      /** The RA PvD as `pvdns pvds --json` shows it, or undefined while there is none. */
      const wifiPvd = async () => {
        const r = await runPvdns(["pvds", "--json", ...control], { netns: host.name });
        assert.equal(r.code, 0, r.stderr);
        return (JSON.parse(r.stdout).pvds as {
          id: string;
          additionalInfo?: unknown;
          zones: { zone: string; source: string; accepted: boolean; reason: string }[];
        }[]).find((p) => p.id === ID);
      };
      const wifiZones = async () =>
        (await wifiPvd())!.zones.map((z) => [z.zone, z.source, z.accepted, z.reason]);
      /** `pvdns route NAME --daemon`: its output, printed for the README. */
      const route = async (name: string) => {
        const r = await runPvdns(["route", name, "--daemon", ...control], { netns: host.name });
        assert.equal(r.code, 0, r.stderr);
        console.log(`--- pvdns route ${name} --daemon ---\n${r.stdout}`);
        return r.stdout;
      };
      const ask = async (name: string) => {
        const r = await dig({ server: "127.0.0.53", name, netns: host.name });
        assert.equal(r.status, "NOERROR", r.raw);
        return r.answers.map((a) => a.data);
      };

      await t.step("the RA PvD is learned with its DNSSL domains as network zones", async () => {
        const dnssl = ["com.", "wifi.example.", "lan."];
        // Routers repeat their RAs; so does the test until pvdns has the PvD and its
        // additional information (fetched at once: H=1), so that nothing changes later.
        for (let i = 0; i < 30; i++) {
          if (i % 2 === 0) await sendRa(router.name, veth.a, "fe80::1", pvdRa(ID, 1, 1800, dnssl));
          if ((await wifiPvd())?.additionalInfo !== undefined) break;
          await new Promise((r) => setTimeout(r, 500));
        }
        assert.ok((await wifiPvd())?.additionalInfo, pvdns.output().join("\n"));
        assert.deepEqual(await wifiZones(), [
          ["com.", "dnssl", false, "public-suffix"],
          ["wifi.example.", "dnssl", false, "full-tunnel"],
          ["lan.", "dnssl", true, "private-use"],
        ]);
      });

      const capture = async (ifname: string): Promise<Capture> => {
        const c = await startCapture({
          interface: ifname,
          filter: "udp port 53",
          netns: host.name,
        });
        bed!.defer(() => c.stop());
        return c;
      };
      const [wifiCap, vpnCap] = [await capture(veth.b), await capture(vpnLink.b)];
      /**
       * Both captures once they hold everything sent so far: a marker query is sent through each
       * link last (tcpdump writes a link's packets in order), and awaited in its file.
       */
      let markers = 0;
      const drained = async () => {
        const n = ++markers;
        const marks = [[wifiCap, `mark-${n}.lan.`], [vpnCap, `mark-${n}.bank.com.`]] as const;
        const out: CapturedPacket[][] = [];
        for (const [cap, name] of marks) {
          await dig({ server: "127.0.0.53", name, netns: host.name }); // NXDOMAIN: no such name
          for (let i = 0; i < 100 && queriesFor(await cap.packets(), name) === 0; i++) {
            await new Promise((r) => setTimeout(r, 50));
          }
          const packets = await cap.packets();
          assert.equal(queriesFor(packets, name), 1, `${name} never reached its capture`);
          out.push(packets);
        }
        return out as [wifi: CapturedPacket[], vpn: CapturedPacket[]];
      };

      await t.step("pvdns pvds and pvdns route --daemon say which claims are refused", async () => {
        const table = await runPvdns(["pvds", ...control], { netns: host.name });
        assert.equal(table.code, 0, table.stderr);
        console.log(`--- pvdns pvds ---\n${table.stdout}`);
        assert.match(
          table.stdout,
          new RegExp(`refused: zone com\\. claimed by network ${ID} \\(dnssl\\), not accepted`),
        );
        const bank = await route("www.bank.com");
        assert.match(bank, /^step: {5}3 longest DNS zone$/m);
        assert.match(bank, /^pvd: {6}vpn\.example\.com$/m);
        assert.match(
          bank,
          /^refused: {2}zone com\. claimed by network .*: public suffix \(Public Suffix List\)$/m,
        );
        const wifiName = await route("www.wifi.example");
        assert.match(wifiName, /^pvd: {6}vpn\.example\.com$/m);
        assert.match(
          wifiName,
          /^refused: {2}zone wifi\.example\. claimed by network .*: would capture names from vpn\.example\.com \(claims \., priority 100\)$/m,
        );
        const lan = await route("router.lan");
        assert.match(lan, new RegExp(`^pvd: {6}${ID.replaceAll(".", "\\.")}$`, "m"));
        assert.match(lan, /^zone: {5}lan\. from the network \(dnssl\), accepted: private-use/m);
      });

      await t.step(
        "www.bank.com and www.wifi.example go to the VPN, router.lan to Wi-Fi",
        async () => {
          assert.deepEqual(await ask("www.bank.com"), ["192.0.2.80"]);
          assert.deepEqual(await ask("www.wifi.example"), ["192.0.2.81"]);
          assert.deepEqual(await ask("router.lan"), ["198.51.100.1"]);
          const [wifi, vpn] = await drained();
          const counts = (name: string) => [queriesFor(wifi, name), queriesFor(vpn, name)];
          console.log(
            `captures before the reload (wifi, vpn): www.bank.com ${counts("www.bank.com.")}, ` +
              `router.lan ${counts("router.lan.")}, www.wifi.example ${
                counts("www.wifi.example.")
              }`,
          );
          assert.deepEqual(counts("www.bank.com."), [0, 1]);
          assert.deepEqual(counts("router.lan."), [1, 0]);
          assert.deepEqual(counts("www.wifi.example."), [0, 1]);
        },
      );

      await t.step("/metrics counts the claims by verdict", async () => {
        const r = await exec(
          ["curl", "-sS", "--unix-socket", socket, "http://localhost/metrics"],
          { netns: host.name, timeoutMs: 10_000 },
        );
        assert.equal(r.code, 0, r.stderr);
        for (const verdict of ["public_suffix", "full_tunnel", "accepted"]) {
          const line = `pvdns_zone_claims{pvd="${ID}",origin="dnssl",verdict="${verdict}"} 1`;
          assert.ok(r.stdout.split("\n").includes(line), `${line} in\n${r.stdout}`);
        }
      });

      await t.step("acceptZones naming the public suffix com is refused at reload", async () => {
        await Deno.writeTextFile(pvdns.configPath!, JSON.stringify(config(["com"])));
        await pvdns.waitForLine(/reload of .* refused/);
        await pvdns.waitForLine(
          /discovery\.pvdOptions\[0\]\.acceptZones\[0\]: "com\." cannot be accepted from a network/,
        );
      });

      await t.step("acceptZones wifi.example (config reload) sends it to Wi-Fi", async () => {
        const before = queriesFor(await vpnCap.packets(), "www.wifi.example.");
        await Deno.writeTextFile(pvdns.configPath!, JSON.stringify(config(["wifi.example"])));
        await pvdns.waitForLine(/pvdns: reloaded .*changed pvd\.example\.com/);
        assert.deepEqual(await wifiZones(), [
          ["com.", "dnssl", false, "public-suffix"],
          ["wifi.example.", "dnssl", true, "accept-zones"],
          ["lan.", "dnssl", true, "private-use"],
        ]);
        assert.deepEqual(await ask("www.wifi.example"), ["198.51.100.81"]);
        assert.match(
          await route("www.wifi.example"),
          /^zone: {5}wifi\.example\. from the network \(dnssl\), accepted: allowed by its acceptZones \(wifi\.example\.\)$/m,
        );
        assert.deepEqual(await ask("www.bank.com"), ["192.0.2.80"], "com. is still refused");
        const [wifi, vpn] = await drained();
        console.log(
          `captures after the reload (wifi, vpn): www.wifi.example ` +
            `${queriesFor(wifi, "www.wifi.example.")},${queriesFor(vpn, "www.wifi.example.")}; ` +
            `www.bank.com ${queriesFor(wifi, "www.bank.com.")},${queriesFor(vpn, "www.bank.com.")}`,
        );
        assert.equal(queriesFor(wifi, "www.wifi.example."), 1);
        assert.equal(queriesFor(vpn, "www.wifi.example."), before, "not asked on the VPN again");
        assert.equal(queriesFor(wifi, "www.bank.com."), 0);
      });
    } catch (e) {
      if (bed) console.error(`https stderr:\n${bed.https.stderr()}`);
      if (daemonOutput) console.error(`pvdns output:\n${daemonOutput().join("\n")}`);
      throw e;
    } finally {
      await bed?.close();
    }
  },
});

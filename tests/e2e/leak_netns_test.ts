/**
 * The no-leak guarantee on real networks (issue 3): pvdns runs in a "host" namespace with two
 * links, one per PvD, each leading to a namespace with its own dnsmasq (split horizon). A
 * tcpdump on each link records every DNS packet while dig sends a scripted mix of queries;
 * then the captures must show each query on its PvD's link only, nothing for special-use or
 * RFC 6303 names, and nothing on the isp link while the vpn server is dead.
 *
 * ```
 *  host ns: dig ─► pvdns 10.99.0.53 (routes) / 10.99.0.54 (bound to vpn)
 *    isp.example  src 198.18.1.10 ── isp link ── isp ns: dnsmasq 198.18.53.1  isp.test shared.test
 *    vpn.example  src 10.8.0.10   ── vpn link ── vpn ns: dnsmasq 10.9.53.1    corp.test shared.test
 * ```
 *
 * Both servers are off-link. The host's main table sends everything through the isp link;
 * `ip rule from 10.8.0.10` alone sends the vpn source through the vpn link, so a packet that
 * skipped its source binding would show up on the isp link. Nothing leaves the namespaces.
 *
 * @module
 */

import assert from "node:assert/strict";
import { dig, type DigOptions, type DigResult, txtStrings } from "../../testkit/dig.ts";
import { type Dnsmasq, startDnsmasq } from "../../testkit/dnsmasq.ts";
import { exec, execOk, sleep } from "../../testkit/exec.ts";
import {
  createNetns,
  createVethPair,
  type Netns,
  writeNetnsResolvConf,
} from "../../testkit/netns.ts";
import { type PvdnsProcess, startPvdns } from "../../testkit/pvdns_process.ts";

const ISP = { src: "198.18.1.10", gw: "198.18.1.1", server: "198.18.53.1", table: "100" };
const VPN = { src: "10.8.0.10", gw: "10.8.0.1", server: "10.9.53.1", table: "200" };
const G = "10.99.0.53"; // general listener: routes by policy
const V = "10.99.0.54"; // listener bound to vpn.example
const SHARED = { isp: "198.18.100.1", vpn: "10.9.100.1" }; // www.shared.test per horizon
const MAIL = { isp: "198.18.100.2", vpn: "10.9.100.2" }; // mail.shared.test per horizon
const BIG = "v".repeat(2000); // a TXT answer too big for one UDP reply

/** One DNS packet from a capture. */
interface Packet {
  ts: number;
  src: string;
  sport: number;
  dst: string;
  dport: number;
  /** Question names (lower case, no trailing dot) tcpdump printed; empty for bare TCP segments. */
  names: string[];
  line: string;
}

/** A running tcpdump writing `udp/tcp port 53` on `ifname` (in `netns`) to a pcap file. */
async function startCapture(netns: string, ifname: string) {
  const file = await Deno.makeTempFile({ prefix: "pvdns-leak-", suffix: ".pcap" });
  const filter = "udp port 53 or tcp port 53";
  const child = new Deno.Command("ip", {
    args: ["netns", "exec", netns, "tcpdump", "-i", ifname, "-n", "-U", "-w", file, filter],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let stderr = "";
  const pump = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of child.stderr) stderr += decoder.decode(chunk);
  })();
  const status = child.status;
  let exited = false;
  status.then(() => exited = true);
  const stop = async () => {
    if (!exited) child.kill("SIGINT");
    const killer = setTimeout(() => !exited && child.kill("SIGKILL"), 5000);
    try {
      await status;
      await pump;
    } finally {
      clearTimeout(killer);
    }
  };
  // Queries must not start before the capture does.
  for (let i = 0; i < 100 && !/listening on/.test(stderr) && !exited; i++) await sleep(50);
  if (!/listening on/.test(stderr)) {
    await stop();
    await Deno.remove(file).catch(() => {});
    throw new Error(`tcpdump on ${ifname} did not start: ${stderr}`);
  }
  let packets: Packet[] | undefined;
  return {
    stop,
    /** Waits (bounded) until the capture so far holds a packet naming `name`. */
    async waitFor(name: string, timeoutMs = 5000): Promise<void> {
      for (const end = Date.now() + timeoutMs; Date.now() < end; await sleep(100)) {
        const r = await exec(["tcpdump", "-r", file, "-n"]);
        if (r.stdout.includes(name)) return;
      }
    },
    /** Stop (if running) and parse the capture; the pcap file is removed. */
    async packets(): Promise<Packet[]> {
      if (packets) return packets;
      await stop();
      const text = await execOk(["tcpdump", "-r", file, "-n", "-tt", "-vv"]);
      await Deno.remove(file).catch(() => {});
      return packets = parseTcpdump(text);
    },
    async discard() {
      await stop();
      await Deno.remove(file).catch(() => {});
    },
  };
}

/** Parse `tcpdump -n -tt -vv` text (a packet's continuation lines are indented). */
function parseTcpdump(text: string): Packet[] {
  const joined: string[] = [];
  for (const line of text.split("\n")) {
    if (/^\s/.test(line) && joined.length) joined[joined.length - 1] += " " + line.trim();
    else if (/^\d+\.\d+ /.test(line)) joined.push(line);
  }
  return joined.map((line) => {
    const m = /(\d+\.\d+\.\d+\.\d+)\.(\d+) > (\d+\.\d+\.\d+\.\d+)\.(\d+):/.exec(line);
    if (!m) throw new Error(`unparsed capture line: ${line}`);
    const names = [...line.matchAll(/[\w-]+\? (\S+)/g)].map((q) =>
      q[1]!.toLowerCase().replace(/\.$/, "")
    );
    return {
      ts: Number(line.split(" ")[0]),
      src: m[1]!,
      sport: Number(m[2]),
      dst: m[3]!,
      dport: Number(m[4]),
      names,
      line,
    };
  });
}

/** Is `name` equal to or under `zone`? */
const under = (name: string, zone: string) => name === zone || name.endsWith("." + zone);

/** Packets asking about `name` (exactly). */
const naming = (pkts: Packet[], name: string) => pkts.filter((p) => p.names.includes(name));

const addrs = (r: DigResult) => r.answers.filter((a) => a.type === "A").map((a) => a.data);

/** The forwarded mix: each name is asked once, must travel on `link` only and get `want`. */
const FORWARDED: {
  name: string;
  type?: "A" | "PTR" | "TXT";
  via: string;
  source?: string;
  tcp?: boolean;
  link: "isp" | "vpn";
  want: string;
}[] = [
  { name: "www.isp.test", via: G, link: "isp", want: "198.18.100.10" }, // zone of isp
  { name: "www.corp.test", via: G, link: "vpn", want: "10.9.100.10" }, // zone of vpn
  { name: "tcp.corp.test", via: G, tcp: true, link: "vpn", want: "10.9.100.11" }, // client TCP
  { name: "big.corp.test", type: "TXT", via: G, link: "vpn", want: BIG }, // TC → TCP upstream
  { name: "1.1.18.198.in-addr.arpa", type: "PTR", via: G, link: "isp", want: "gw.isp.test." },
  { name: "1.0.8.10.in-addr.arpa", type: "PTR", via: G, link: "vpn", want: "gw.corp.test." },
  { name: "bound.shared.test", via: V, link: "vpn", want: "10.9.100.3" }, // bound listener
  { name: "from-vpn.shared.test", via: G, source: VPN.src, link: "vpn", want: "10.9.100.4" },
  { name: "from-isp.shared.test", via: G, source: ISP.src, link: "isp", want: "198.18.100.3" },
  { name: "plain.shared.test", via: G, link: "isp", want: "198.18.100.4" }, // default PvD
];

/** Answered by pvdns itself: [name, type, expected status]; the last one by a rule. */
const LOCAL: [string, string, string][] = [
  ["localhost", "A", "NOERROR"],
  ["db.localhost", "AAAA", "NOERROR"],
  ["x.invalid", "A", "NXDOMAIN"],
  ["printer.local", "A", "NXDOMAIN"],
  ["_dns.resolver.arpa", "SVCB", "NOERROR"],
  ["x.home.arpa", "A", "NXDOMAIN"],
  ["a.onion", "A", "NXDOMAIN"],
  ["1.0.168.192.in-addr.arpa", "PTR", "NXDOMAIN"],
  ["1.2.3.10.in-addr.arpa", "PTR", "NXDOMAIN"], // 10/8 outside the vpn's /24
  ["1.0.16.172.in-addr.arpa", "PTR", "NXDOMAIN"],
  ["1.0.254.169.in-addr.arpa", "PTR", "NXDOMAIN"],
  ["1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.e.f.ip6.arpa", "PTR", "NXDOMAIN"],
  ["x.ads.test", "A", "NXDOMAIN"], // policy rule
];
/** Zones of which no name may appear on any link. */
const LOCAL_ZONES = ("localhost invalid local onion resolver.arpa home.arpa ads.test ip6.arpa " +
  "168.192.in-addr.arpa 16.172.in-addr.arpa 254.169.in-addr.arpa 3.10.in-addr.arpa").split(" ");
/** Asked while the vpn server is dead. */
const DEAD: { name: string; via: string; source?: string }[] = [
  { name: "gone.corp.test", via: G },
  { name: "gone-bound.shared.test", via: V },
  { name: "gone-client.shared.test", via: G, source: VPN.src },
];

Deno.test("no leak on the wire: two PvDs on two links, captured per link", async (t) => {
  const started = Date.now();
  const spaces: Netns[] = [];
  const cleanups: (() => Promise<unknown>)[] = [];
  try {
    const ns = async () => {
      const n = await createNetns();
      spaces.push(n);
      return n;
    };
    const [host, ispNs, vpnNs] = [await ns(), await ns(), await ns()];
    const ispLink = await createVethPair(
      { netns: host.name, addresses: [`${ISP.src}/24`] },
      { netns: ispNs.name, addresses: [`${ISP.gw}/24`] },
    );
    const vpnLink = await createVethPair(
      { netns: vpnNs.name, addresses: [`${VPN.gw}/24`] },
      { netns: host.name, addresses: [`${VPN.src}/24`] },
    );
    const [ispIf, vpnIf] = [ispLink.a, vpnLink.b]; // host-side ends
    const h = (...cmd: string[]) => execOk(cmd, { netns: host.name });
    await h("sysctl", "-qw", "net.ipv4.conf.all.rp_filter=1");
    await execOk(["sysctl", "-qw", "net.ipv4.ip_forward=0"], { netns: vpnNs.name });
    await h("ip", "addr", "add", `${G}/32`, "dev", "lo");
    await h("ip", "addr", "add", `${V}/32`, "dev", "lo");
    await h("ip", "route", "add", "default", "via", ISP.gw, "dev", ispIf);
    await h("ip", "route", "add", "default", "via", ISP.gw, "dev", ispIf, "table", ISP.table);
    await h("ip", "route", "add", "default", "via", VPN.gw, "dev", vpnIf, "table", VPN.table);
    await h("ip", "rule", "add", "from", ISP.src, "table", ISP.table);
    await h("ip", "rule", "add", "from", VPN.src, "table", VPN.table);
    // Put the vpn server's address on lo ourselves, so that stopping dnsmasq leaves it there
    // (ICMP port unreachable) until we remove it (silence).
    await execOk(["ip", "addr", "add", `${VPN.server}/32`, "dev", "lo"], { netns: vpnNs.name });

    const ispDns: Dnsmasq = await startDnsmasq({
      netns: ispNs.name,
      address: ISP.server,
      zones: ["shared.test"],
      // With subnets, dnsmasq also serves their reverse zones (and only A records inside them).
      extraArgs: ["--auth-zone=isp.test,198.18.1.0/24,198.18.100.0/24"],
      records: [
        { name: "www.isp.test", type: "A", value: "198.18.100.10" },
        { name: "gw.isp.test", type: "A", value: ISP.gw },
        { name: "from-isp.shared.test", type: "A", value: "198.18.100.3" },
        { name: "plain.shared.test", type: "A", value: "198.18.100.4" },
        { name: "www.shared.test", type: "A", value: SHARED.isp },
        { name: "mail.shared.test", type: "A", value: MAIL.isp },
      ],
    });
    cleanups.push(() => ispDns.stop());
    const vpnDns: Dnsmasq = await startDnsmasq({
      netns: vpnNs.name,
      address: VPN.server,
      zones: ["shared.test"],
      extraArgs: ["--auth-zone=corp.test,10.8.0.0/24,10.9.100.0/24"],
      records: [
        { name: "gw.corp.test", type: "A", value: VPN.gw },
        { name: "bound.shared.test", type: "A", value: "10.9.100.3" },
        { name: "from-vpn.shared.test", type: "A", value: "10.9.100.4" },
        { name: "www.corp.test", type: "A", value: "10.9.100.10" },
        { name: "tcp.corp.test", type: "A", value: "10.9.100.11" },
        { name: "big.corp.test", type: "TXT", value: BIG },
        { name: "www.shared.test", type: "A", value: SHARED.vpn },
        { name: "mail.shared.test", type: "A", value: MAIL.vpn },
      ],
    });
    cleanups.push(() => vpnDns.stop());

    const pvd = (id: string, ifname: string, p: typeof ISP, prefix: string, zone: string) => ({
      id,
      interface: ifname,
      prefixes: [prefix],
      sourceAddresses: [p.src],
      servers: [p.server],
      dnsZones: [zone],
      strictRoutes: true,
    });
    // Nothing in the host namespace may ask the machine's resolver (Deno's update check would).
    await writeNetnsResolvConf(host.name, "nameserver 127.0.0.1\n");
    const pvdns: PvdnsProcess = await startPvdns({
      netns: host.name,
      env: { DENO_NO_UPDATE_CHECK: "1" },
      config: {
        listen: [`${G}:53`, { address: `${V}:53`, pvd: "vpn.example" }],
        // Listeners off loopback need an allow list: the test's clients live in these nets.
        allow: ["10.0.0.0/8", "198.18.0.0/15", "127.0.0.0/8"],
        pvds: [
          { ...pvd("isp.example", ispIf, ISP, "198.18.1.0/24", "isp.test"), default: true },
          pvd("vpn.example", vpnIf, VPN, "10.8.0.0/24", "corp.test"),
        ],
        rules: [{ match: { suffix: "ads.test" }, action: "nxdomain" }],
        upstream: { timeoutMs: 400, deadlineMs: 1200 },
      },
    });
    cleanups.push(() => pvdns.stop());

    const ispCap = await startCapture(host.name, ispIf);
    cleanups.push(() => ispCap.discard());
    const vpnCap = await startCapture(host.name, vpnIf);
    cleanups.push(() => vpnCap.discard());
    /** dig inside the host namespace (one try, at most 3 s). */
    const dq = (server: string, name: string, type = "A", o: Partial<DigOptions> = {}) =>
      dig({ netns: host.name, server, name, type, timeSeconds: 3, ...o });

    await t.step(
      "the shared name: each PvD's answer, never the other's, cached or not",
      async () => {
        const expect = async (via: string, name: string, want: string, o = {}) => {
          const r = await dq(via, name, "A", o);
          assert.equal(r.status, "NOERROR", r.raw);
          assert.deepEqual(addrs(r), [want], `${name} via ${via} ${JSON.stringify(o)}`);
        };
        for (let round = 0; round < 2; round++) { // round 1 is served from the caches
          await expect(G, "www.shared.test", SHARED.isp); // general listener first → default isp
          await expect(V, "www.shared.test", SHARED.vpn);
          await expect(G, "www.shared.test", SHARED.vpn, { source: VPN.src });
          await expect(G, "www.shared.test", SHARED.isp, { source: ISP.src });
          await expect(V, "mail.shared.test", MAIL.vpn); // vpn-bound listener first
          await expect(G, "mail.shared.test", MAIL.isp);
          await expect(V, "mail.shared.test", MAIL.vpn, { tcp: true });
          await expect(G, "mail.shared.test", MAIL.isp, { tcp: true });
        }
      },
    );

    await t.step("forwarded queries get an answer from their PvD's server", async () => {
      for (const f of FORWARDED) {
        const r = await dq(f.via, f.name, f.type, { source: f.source, tcp: f.tcp });
        assert.equal(r.status, "NOERROR", r.raw);
        const got = r.answers.filter((a) => a.type === (f.type ?? "A"))
          .map((a) => f.type === "TXT" ? txtStrings(a.data).join("") : a.data);
        assert.deepEqual(got, [f.want], f.name);
      }
    });

    await t.step("special-use and RFC 6303 names are answered locally", async () => {
      // From the general listener, from a client in the vpn prefix, and from the vpn-bound
      // listener (where an explicit PvD beats rules, so the rule name is left out).
      for (const [via, source] of [[G, undefined], [G, VPN.src], [V, undefined]]) {
        for (const [name, type, status] of LOCAL) {
          if (via === V && name.endsWith(".ads.test")) continue;
          const r = await dq(via!, name, type, { source });
          assert.equal(r.status, status, r.raw);
        }
      }
      assert.deepEqual(addrs(await dq(G, "localhost")), ["127.0.0.1"]);
    });

    let deadFrom = 0;
    let deadTo = 0;
    await t.step("a dead vpn server gives SERVFAIL (refused, then silent)", async () => {
      await sleep(300);
      deadFrom = Date.now() / 1000;
      await vpnDns.stop(); // port unreachable
      for (const d of DEAD) {
        const r = await dq(d.via, d.name, "A", { source: d.source });
        assert.equal(r.status, "SERVFAIL", r.raw);
      }
      await execOk(["ip", "addr", "del", `${VPN.server}/32`, "dev", "lo"], { netns: vpnNs.name });
      for (const d of DEAD) { // silent: no ICMP either
        const r = await dq(d.via, "silent-" + d.name, "A", { source: d.source });
        assert.equal(r.status, "SERVFAIL", r.raw);
      }
      // A loaded machine may write the capture late: wait for the last query to show up.
      await vpnCap.waitFor("silent-" + DEAD[DEAD.length - 1]!.name);
      await sleep(300);
      deadTo = Date.now() / 1000;
    });

    const isp = await ispCap.packets();
    const vpn = await vpnCap.packets();
    console.log(`capture counts: isp link ${isp.length} packets, vpn link ${vpn.length} packets`);

    await t.step("every packet on a link is between its PvD's source and server", () => {
      for (const [pkts, p] of [[isp, ISP], [vpn, VPN]] as const) {
        for (const k of pkts) {
          const out = k.src === p.src && k.dst === p.server && k.dport === 53;
          const back = k.src === p.server && k.sport === 53 && k.dst === p.src;
          assert.ok(
            out || back,
            `foreign packet on the ${p === ISP ? "isp" : "vpn"} link: ${k.line}`,
          );
        }
      }
    });

    await t.step("each forwarded name travels on its own link only", () => {
      for (const f of FORWARDED) {
        const [mine, other] = f.link === "isp" ? [isp, vpn] : [vpn, isp];
        assert.ok(naming(mine, f.name).length > 0, `${f.name} not seen on the ${f.link} link`);
        assert.deepEqual(naming(other, f.name).map((p) => p.line), [], `${f.name} leaked`);
      }
      for (const k of isp) {
        for (const n of k.names) {
          assert.ok(!under(n, "corp.test") && !under(n, "0.8.10.in-addr.arpa"), k.line);
        }
      }
      for (const k of vpn) {
        for (const n of k.names) {
          assert.ok(!under(n, "isp.test") && !under(n, "1.18.198.in-addr.arpa"), k.line);
        }
      }
      // The shared names were asked once per PvD: each horizon filled its own cache entry,
      // and no PvD's cached answer stood in for the other's.
      for (const n of ["www.shared.test", "mail.shared.test"]) {
        for (const [pkts, p] of [[isp, ISP], [vpn, VPN]] as const) {
          assert.equal(naming(pkts, n).filter((k) => k.src === p.src).length, 1, n);
        }
      }
      // The TXT answer was truncated over UDP and fetched again over TCP on the vpn link.
      assert.ok(vpn.some((k) => k.line.includes("Flags [S]") && k.src === VPN.src), "no TCP");
    });

    await t.step("no special-use or RFC 6303 name on any link", () => {
      for (const k of [...isp, ...vpn]) {
        for (const n of k.names) {
          assert.ok(!LOCAL_ZONES.some((z) => under(n, z)), `local name on the wire: ${k.line}`);
        }
      }
    });

    await t.step("the dead vpn server: tried on the vpn link, nothing on the isp link", () => {
      const during = isp.filter((k) => k.ts >= deadFrom && k.ts <= deadTo);
      assert.deepEqual(during.map((k) => k.line), []);
      for (const d of DEAD) {
        for (const name of [d.name, "silent-" + d.name]) {
          assert.ok(naming(vpn, name).length > 0, `${name} not tried on the vpn link`);
          assert.equal(naming(isp, name).length, 0, `${name} on the isp link`);
        }
      }
    });
  } finally {
    for (const c of cleanups.reverse()) await c().catch(() => {});
    for (const ns of spaces) await ns.delete();
    console.log(`leak_netns_test: ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }
});

/**
 * Per-link DNS configuration from systemd-resolved (`resolvectl`) and NetworkManager (`nmcli`):
 * the text parsers against hand-written recordings (tests/host/fixtures/, see its README), the
 * readers with injected runners (missing tool, daemon not running), and the real runner on
 * harmless commands. No DNS traffic.
 */

import assert from "node:assert/strict";
import { exec } from "../../testkit/exec.ts";
import { withNetns } from "../../testkit/netns.ts";
import {
  type CommandRunner,
  inInitNetworkNamespace,
  type LinkDns,
  parseNmcliDevices,
  parseResolvectl,
  parseResolvectlList,
  parseResolvedServer,
  readNetworkManagerLinks,
  readResolvedLinks,
  runHostCommand,
} from "../../src/host/resolved_links.ts";

const fixture = (name: string) => Deno.readTextFile(new URL(`./fixtures/${name}`, import.meta.url));

/** The laptop of fixtures/README.md, as systemd-resolved reports it. */
async function resolvedLaptop(): Promise<Record<string, string>> {
  return {
    "resolvectl --no-pager dns": await fixture("resolvectl_dns_laptop.txt"),
    "resolvectl --no-pager domain": await fixture("resolvectl_domain_laptop.txt"),
    "resolvectl --no-pager default-route": await fixture("resolvectl_default_route_laptop.txt"),
    "resolvectl --no-pager dnsovertls": await fixture("resolvectl_dnsovertls_laptop.txt"),
  };
}

const NMCLI_ARGS = "-t -f GENERAL.DEVICE,IP4.DNS,IP6.DNS,IP4.DOMAIN,IP6.DOMAIN device show";

/** A runner answering from `outputs` ("COMMAND ARGS…" → stdout); anything else is not installed. */
function fakeRunner(outputs: Record<string, string | Error>) {
  const calls: string[] = [];
  const run: CommandRunner = (command, args) => {
    const key = [command, ...args].join(" ");
    calls.push(key);
    const out = outputs[key];
    if (out instanceof Error) return Promise.reject(out);
    if (out !== undefined) return Promise.resolve(out);
    return Promise.reject(
      new Deno.errors.NotFound(`Failed to spawn '${command}': No such file or directory`),
    );
  };
  return { run, calls };
}

// The errors the tools print (to stderr, with a non-zero exit) when their daemon is not running.
const RESOLVED_DOWN = new Error(
  "resolvectl --no-pager dns: Failed to get global data: " +
    "Unit dbus-org.freedesktop.resolve1.service not found.",
);
const NM_DOWN = new Error(`nmcli ${NMCLI_ARGS}: Error: NetworkManager is not running.`);

Deno.test("parseResolvectlList() reads Global and Link lines", async (t) => {
  const cases: { name: string; text: string; want: unknown }[] = [
    {
      name: "several links, one without servers",
      text:
        "Global:\nLink 2 (eth0): 192.0.2.1 2001:db8::1\nLink 3 (wg0): 10.8.0.1\nLink 4 (eth1):\n",
      want: [
        { items: [] },
        { ifindex: 2, interface: "eth0", items: ["192.0.2.1", "2001:db8::1"] },
        { ifindex: 3, interface: "wg0", items: ["10.8.0.1"] },
        { ifindex: 4, interface: "eth1", items: [] },
      ],
    },
    {
      name: "Global only",
      text: "Global: 192.0.2.53 2001:db8::53\n",
      want: [{ items: ["192.0.2.53", "2001:db8::53"] }],
    },
    {
      name: "a list wrapped at the terminal width (continuation indented by 8)",
      text: "Global: 1.1.1.1#cloudflare-dns.com 1.0.0.1#cloudflare-dns.com\n" +
        "        2606:4700:4700::1111#cloudflare-dns.com\n" +
        "Link 2 (enp0s31f6): 192.0.2.1\n",
      want: [
        {
          items: [
            "1.1.1.1#cloudflare-dns.com",
            "1.0.0.1#cloudflare-dns.com",
            "2606:4700:4700::1111#cloudflare-dns.com",
          ],
        },
        { ifindex: 2, interface: "enp0s31f6", items: ["192.0.2.1"] },
      ],
    },
    {
      name: "colours on (SYSTEMD_COLORS ignored)",
      text: "\x1b[0;1;39mLink 3 (wlp2s0)\x1b[0m: ~. home.example\n",
      want: [{ ifindex: 3, interface: "wlp2s0", items: ["~.", "home.example"] }],
    },
    {
      name: "an interface name with parentheses",
      text: "Link 7 (vpn(1)): 10.9.0.1\n",
      want: [{ ifindex: 7, interface: "vpn(1)", items: ["10.9.0.1"] }],
    },
    {
      name: "error text: no entries",
      text: "Failed to get global data: Unit dbus-org.freedesktop.resolve1.service not found.\n",
      want: [],
    },
    { name: "empty", text: "", want: [] },
  ];
  for (const c of cases) {
    await t.step(c.name, () => assert.deepEqual(parseResolvectlList(c.text), c.want));
  }
});

Deno.test("parseResolvedServer() splits resolvectl's server strings", async (t) => {
  const cases: [string, unknown][] = [
    ["192.0.2.1", { address: "192.0.2.1" }],
    ["192.0.2.1:5353", { address: "192.0.2.1", port: 5353 }],
    ["2001:db8::1", { address: "2001:db8::1" }],
    ["[2001:db8::1]:5353", { address: "2001:db8::1", port: 5353 }],
    ["fe80::1%3", { address: "fe80::1", zone: "3" }],
    ["[fe80::1]:53%3", { address: "fe80::1", port: 53, zone: "3" }],
    ["1.1.1.1#cloudflare-dns.com", { address: "1.1.1.1", name: "cloudflare-dns.com" }],
    [
      "[2606:4700:4700::1111]:853#cloudflare-dns.com",
      { address: "2606:4700:4700::1111", port: 853, name: "cloudflare-dns.com" },
    ],
    ["192.0.2.1:x", undefined],
    ["", undefined],
  ];
  for (const [text, want] of cases) {
    await t.step(text || "(empty)", () => assert.deepEqual(parseResolvedServer(text), want));
  }
});

Deno.test("parseResolvectl() combines the listings per link", async (t) => {
  await t.step("the laptop: links without servers are left out, domains split by ~", async () => {
    const out = await resolvedLaptop();
    const parsed = parseResolvectl({
      dns: out["resolvectl --no-pager dns"]!,
      domain: out["resolvectl --no-pager domain"]!,
      defaultRoute: out["resolvectl --no-pager default-route"]!,
      dnsOverTls: out["resolvectl --no-pager dnsovertls"]!,
    });
    assert.deepEqual(parsed, {
      links: [
        {
          interface: "wlp2s0",
          ifindex: 3,
          servers: [{ address: "192.168.1.1" }, { address: "2001:db8:1::1" }, {
            address: "fe80::1",
          }],
          searchDomains: ["home.example"],
          routingDomains: ["."],
          defaultRoute: true,
          dnsOverTls: "no",
        },
        {
          interface: "wg0",
          ifindex: 5,
          servers: [{ address: "10.8.0.1" }, { address: "fd00:8::1" }],
          searchDomains: ["example.net"],
          routingDomains: ["corp.example.com"],
          defaultRoute: false,
          dnsOverTls: "no",
        },
      ],
    });
  });

  await t.step("Global only", () => {
    const parsed = parseResolvectl({
      dns: "Global: 192.0.2.53\nLink 2 (eth0):\n",
      domain: "Global: ~example.org corp.example\nLink 2 (eth0):\n",
    });
    assert.deepEqual(parsed, {
      links: [],
      global: {
        servers: [{ address: "192.0.2.53" }],
        searchDomains: ["corp.example"],
        routingDomains: ["example.org"],
      },
    });
  });

  await t.step("DNSOverTLS: a link's own mode, else the global one; zones named", () => {
    const parsed = parseResolvectl({
      dns: "Global: 1.1.1.1#one.one.one.one fe80::53%2\n" +
        "Link 2 (eth0): 192.0.2.1\nLink 3 (wg0): 10.8.0.1#dns.corp.example.com\n",
      domain: "Global:\nLink 2 (eth0):\nLink 3 (wg0): ~.\n",
      dnsOverTls: "Global: yes\nLink 2 (eth0): n/a\nLink 3 (wg0): opportunistic\n",
    });
    assert.deepEqual(parsed.global?.servers, [
      { address: "1.1.1.1", name: "one.one.one.one" },
      { address: "fe80::53", zone: "eth0" },
    ]);
    assert.deepEqual(parsed.global?.dnsOverTls, "yes");
    assert.deepEqual(parsed.links.map((l) => [l.interface, l.dnsOverTls, l.defaultRoute]), [
      ["eth0", "yes", undefined],
      ["wg0", "opportunistic", undefined],
    ]);
  });

  await t.step("no servers anywhere", () => {
    assert.deepEqual(parseResolvectl({ dns: "Global:\nLink 2 (eth0):\n", domain: "" }), {
      links: [],
    });
  });
});

Deno.test("parseNmcliDevices() reads terse device blocks", async (t) => {
  const cases: { name: string; text: string; want: LinkDns[] }[] = [
    {
      name: "several devices; escaped colons; devices without DNS left out",
      text: await fixture("nmcli_device_show_laptop.txt"),
      want: [
        {
          interface: "wlp2s0",
          servers: [{ address: "192.168.1.1" }, { address: "2001:db8:1::1" }, {
            address: "fe80::1",
          }],
          searchDomains: ["home.example"],
          routingDomains: [],
        },
        {
          interface: "wg0",
          servers: [{ address: "10.8.0.1" }, { address: "fd00:8::1" }],
          searchDomains: ["example.net"],
          routingDomains: ["corp.example.com"],
        },
      ],
    },
    {
      name: "~. and a zone; empty fields; no trailing newline",
      text: "GENERAL.DEVICE:tun0\nIP4.DNS[1]:10.9.0.1\nIP6.DNS[1]:fe80\\:\\:1%tun0\n" +
        "IP4.DOMAIN[1]:~.\nIP6.DOMAIN:\n\nGENERAL.DEVICE:lo\nIP4.DNS:",
      want: [{
        interface: "tun0",
        servers: [{ address: "10.9.0.1" }, { address: "fe80::1", zone: "tun0" }],
        searchDomains: [],
        routingDomains: ["."],
      }],
    },
    {
      name: "blocks without blank lines between them",
      text:
        "GENERAL.DEVICE:eth0\nIP4.DNS[1]:192.0.2.1\nGENERAL.DEVICE:eth1\nIP4.DNS[1]:198.51.100.1\n",
      want: [
        {
          interface: "eth0",
          servers: [{ address: "192.0.2.1" }],
          searchDomains: [],
          routingDomains: [],
        },
        {
          interface: "eth1",
          servers: [{ address: "198.51.100.1" }],
          searchDomains: [],
          routingDomains: [],
        },
      ],
    },
    { name: "error text", text: "Error: NetworkManager is not running.\n", want: [] },
    { name: "empty", text: "", want: [] },
  ];
  for (const c of cases) {
    await t.step(c.name, () => assert.deepEqual(parseNmcliDevices(c.text), c.want));
  }
});

Deno.test("readResolvedLinks() runs resolvectl read-only; absent when it is missing or fails", async (t) => {
  await t.step("present: the four listings", async () => {
    const { run, calls } = fakeRunner(await resolvedLaptop());
    const links = await readResolvedLinks(run);
    assert.equal(links?.source, "systemd-resolved");
    assert.deepEqual(links?.links.map((l) => l.interface), ["wlp2s0", "wg0"]);
    assert.equal(links?.global, undefined);
    assert.deepEqual(calls.sort(), [
      "resolvectl --no-pager default-route",
      "resolvectl --no-pager dns",
      "resolvectl --no-pager dnsovertls",
      "resolvectl --no-pager domain",
    ]);
  });
  await t.step("an older resolvectl without default-route / dnsovertls", async () => {
    const out = await resolvedLaptop();
    const unknown = new Error("resolvectl: Unknown command verb default-route.");
    const { run } = fakeRunner({
      "resolvectl --no-pager dns": out["resolvectl --no-pager dns"]!,
      "resolvectl --no-pager domain": out["resolvectl --no-pager domain"]!,
      "resolvectl --no-pager default-route": unknown,
      "resolvectl --no-pager dnsovertls": unknown,
    });
    const links = await readResolvedLinks(run);
    assert.deepEqual(links?.links.map((l) => [l.interface, l.defaultRoute, l.dnsOverTls]), [
      ["wlp2s0", undefined, undefined],
      ["wg0", undefined, undefined],
    ]);
  });
  await t.step("not installed", async () => {
    assert.equal(await readResolvedLinks(fakeRunner({}).run), undefined);
  });
  await t.step("systemd-resolved not running", async () => {
    const { run } = fakeRunner({
      "resolvectl --no-pager dns": RESOLVED_DOWN,
      "resolvectl --no-pager domain": RESOLVED_DOWN,
      "resolvectl --no-pager default-route": RESOLVED_DOWN,
      "resolvectl --no-pager dnsovertls": RESOLVED_DOWN,
    });
    assert.equal(await readResolvedLinks(run), undefined);
  });
  await t.step("running, but no server anywhere", async () => {
    const { run } = fakeRunner({
      "resolvectl --no-pager dns": "Global:\nLink 2 (eth0):\n",
      "resolvectl --no-pager domain": "Global:\nLink 2 (eth0):\n",
    });
    assert.equal(await readResolvedLinks(run), undefined);
  });
});

Deno.test("readNetworkManagerLinks() runs nmcli read-only; absent when it is missing or fails", async (t) => {
  await t.step("present", async () => {
    const { run, calls } = fakeRunner({
      [`nmcli ${NMCLI_ARGS}`]: await fixture("nmcli_device_show_laptop.txt"),
    });
    const links = await readNetworkManagerLinks(run);
    assert.equal(links?.source, "NetworkManager");
    assert.deepEqual(links?.links.map((l) => l.interface), ["wlp2s0", "wg0"]);
    assert.deepEqual(calls, [`nmcli ${NMCLI_ARGS}`]);
  });
  await t.step("not installed", async () => {
    assert.equal(await readNetworkManagerLinks(fakeRunner({}).run), undefined);
  });
  await t.step("NetworkManager not running", async () => {
    const { run } = fakeRunner({ [`nmcli ${NMCLI_ARGS}`]: NM_DOWN });
    assert.equal(await readNetworkManagerLinks(run), undefined);
  });
  await t.step("running, no device with DNS", async () => {
    const { run } = fakeRunner({ [`nmcli ${NMCLI_ARGS}`]: "GENERAL.DEVICE:lo\n" });
    assert.equal(await readNetworkManagerLinks(run), undefined);
  });
});

Deno.test("inInitNetworkNamespace() compares /proc/self/ns/net with PID 1's", async () => {
  const links = (own: string, init: string | Error) => (path: string) =>
    path === "/proc/self/ns/net"
      ? Promise.resolve(own)
      : init instanceof Error
      ? Promise.reject(init)
      : Promise.resolve(init);
  assert.equal(await inInitNetworkNamespace(links("net:[1]", "net:[1]")), true);
  assert.equal(await inInitNetworkNamespace(links("net:[2]", "net:[1]")), false);
  // Not root: PID 1's namespace cannot be read, so pvdns cannot tell and asks the tools.
  const denied = new Deno.errors.PermissionDenied("readlink '/proc/1/ns/net'");
  assert.equal(await inInitNetworkNamespace(links("net:[2]", denied)), true);
  assert.equal(typeof await inInitNetworkNamespace(), "boolean");
});

Deno.test("inInitNetworkNamespace() without --allow-all (no /proc/*/ns) asks `ip netns identify`", async () => {
  // The start task's permissions: Deno refuses /proc/*/ns without --allow-all.
  const probe = [
    Deno.execPath(),
    "run",
    "--no-prompt",
    "--allow-run=ip",
    new URL("./fixtures/netns_probe.ts", import.meta.url).pathname,
  ];
  const env = { DENO_NO_UPDATE_CHECK: "1" };
  const here = await exec(probe, { env });
  assert.equal(here.stdout.trim(), "true", here.stderr);
  await withNetns(async (ns) => {
    const inside = await ns.exec(probe, { env });
    assert.equal(inside.stdout.trim(), "false", inside.stderr);
  });
});

Deno.test("runHostCommand() returns stdout, and throws when the command is missing or fails", async () => {
  if (!(await inInitNetworkNamespace())) return; // it refuses outside PID 1's namespace
  assert.equal(await runHostCommand("printenv", ["COLUMNS"]), "10000\n");
  assert.equal(await runHostCommand("printenv", ["SYSTEMD_COLORS"]), "0\n");
  await assert.rejects(
    runHostCommand("pvdns-no-such-tool", ["dns"]),
    (e: unknown) => e instanceof Deno.errors.NotFound,
  );
  await assert.rejects(runHostCommand("sh", ["-c", "echo oops >&2; exit 3"]), /sh -c .*: oops$/);
});

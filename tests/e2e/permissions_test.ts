/**
 * Least privilege: pvdns runs with the Deno permissions of `deno task start` (deno.json), which
 * every e2e daemon also gets (testkit/pvdns_process.ts). Here:
 *
 * - the `start` task itself, as a user runs it on a fresh host: the embedded default finds its
 *   upstream in resolv.conf (network namespace with its own `/etc/netns/NS/resolv.conf`), runs
 *   `ip -j route get`, answers, and stops cleanly on SIGTERM;
 * - without `--allow-ffi` the batched UDP listener says it is unavailable without prompting on a
 *   terminal (so `--udp-listener auto` falls back to Deno.listenDatagram), and RA discovery or
 *   `--udp-listener mmsg` refuse to start with a message naming the missing permission;
 * - a config file the permissions do not cover is refused with Deno's reason.
 *
 * @module
 */

import assert from "node:assert/strict";
import { dig } from "../../testkit/dig.ts";
import { startDnsmasq } from "../../testkit/dnsmasq.ts";
import { exec } from "../../testkit/exec.ts";
import { loopbackAddress } from "../../testkit/loopback.ts";
import { createNetns, writeNetnsResolvConf } from "../../testkit/netns.ts";
import {
  REPO_ROOT,
  runPvdns,
  servePermissions,
  START_PERMISSIONS,
  startPvdns,
} from "../../testkit/pvdns_process.ts";

Deno.test("deno task start: the narrowed permissions build the embedded default and serve", async () => {
  assert.ok(!START_PERMISSIONS.includes("--allow-all"), "the start task is narrowed");
  assert.ok(!START_PERMISSIONS.includes("--allow-ffi"), "the start task has no FFI");
  const ns = await createNetns({ prefix: "perm" });
  const upstream = "127.77.0.1";
  const dns = await startDnsmasq({
    address: upstream,
    netns: ns.name,
    zones: ["perm.test"],
    records: [{ name: "www.perm.test", type: "A", value: "198.51.100.21" }],
  });
  try {
    await writeNetnsResolvConf(ns.name, `nameserver ${upstream}\n`);
    const pvdns = await startPvdns({ netns: ns.name, argv: [Deno.execPath(), "task", "start"] });
    try {
      const out = () => pvdns.output().join("\n");
      assert.match(out(), /PvD implicit:lo \(default\): servers 127\.77\.0\.1 from /);
      const r = await dig({ server: "127.0.0.53", name: "www.perm.test", netns: ns.name });
      assert.equal(r.status, "NOERROR", out());
      assert.deepEqual(r.answers.map((a) => a.data), ["198.51.100.21"]);
      assert.doesNotMatch(out(), /NotCapable|Requires \w+ access/, "no permission was missing");
    } finally {
      const status = await pvdns.stop();
      assert.equal(status.code, 0, pvdns.output().join("\n"));
      assert.equal(pvdns.output().at(-1), "pvdns: stopped");
    }
  } finally {
    await dns.stop();
    await ns.delete();
  }
});

Deno.test("without --allow-ffi the batched listener is unavailable, and no prompt is shown on a terminal", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "pvdns-perm-" });
  const script = `${dir}/mmsg.ts`;
  await Deno.writeTextFile(
    script,
    `import { mmsgAvailable } from "${REPO_ROOT}/src/listen/udp_mmsg.ts";\n` +
      `console.log(\`mmsg available: \${mmsgAvailable()}\`);\n`,
  );
  // `script` gives the child a terminal: a permission prompt would show and wait there.
  const onTerminal = async (permissions: readonly string[]) => {
    const command = [Deno.execPath(), "run", "--config", `${REPO_ROOT}/deno.json`, ...permissions]
      .concat(["--allow-read", script])
      .map((w) => `'${w}'`).join(" ");
    return await exec(["script", "-qec", command, "/dev/null"], {
      cwd: REPO_ROOT,
      env: { DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1" },
      timeoutMs: 30_000,
    });
  };
  try {
    await t.step("start task permissions: false, at once", async () => {
      const r = await onTerminal(START_PERMISSIONS.filter((f) => f !== "--no-prompt"));
      assert.doesNotMatch(r.stdout, /requests ffi access/, r.stdout);
      assert.match(r.stdout, /mmsg available: false/, r.stdout);
    });
    await t.step("with --allow-ffi: true", async () => {
      const r = await onTerminal([...START_PERMISSIONS, "--allow-ffi"]);
      assert.match(r.stdout, /mmsg available: true/, r.stdout);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("what needs --allow-ffi refuses to start without it, naming the permission", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "pvdns-perm-" });
  const config = `${dir}/pvdns.jsonc`;
  const listen = loopbackAddress();
  const permissions = servePermissions({ read: [dir] });
  try {
    await t.step("RA discovery", async () => {
      await Deno.writeTextFile(
        config,
        JSON.stringify({ listen: [`${listen}:53`], discovery: { ra: ["lo"] }, pvds: [] }),
      );
      const r = await runPvdns(["serve", "--config", config], { permissions });
      assert.equal(r.code, 1, r.stderr);
      assert.match(
        r.stderr,
        /pvdns: cannot start: discovery\.ra \["lo"\] .* needs Deno's --allow-ffi permission/,
      );
      assert.doesNotMatch(r.stdout, /listening on/, "nothing was bound");
    });
    await t.step("--udp-listener mmsg", async () => {
      await Deno.writeTextFile(
        config,
        JSON.stringify({
          listen: [`${listen}:53`],
          pvds: [{
            id: "home.example.net",
            sourceAddresses: [loopbackAddress({ port: 0 })],
            servers: [loopbackAddress()],
          }],
        }),
      );
      const r = await runPvdns(["serve", "--config", config, "--udp-listener", "mmsg"], {
        permissions,
      });
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /--udp-listener mmsg .* needs Deno's --allow-ffi permission/);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a config file outside the granted paths is refused with Deno's reason", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pvdns-perm-" });
  try {
    const config = `${dir}/pvdns.jsonc`;
    await Deno.writeTextFile(config, "{}");
    const r = await runPvdns(["serve", "--config", config], { permissions: START_PERMISSIONS });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /cannot read the config file: Requires read access to .*--allow-read/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/**
 * The operator commands against a real `pvdns serve` daemon with a control socket: `pvdns pvds`
 * (table and `--json`), `pvdns query` (answer, PvD, source, time; `--json`), `pvdns flush`,
 * `pvdns reload`, `pvdns stats`, `--token` on a TCP control listener, and the message and exit
 * status when no daemon is there.
 *
 * @module
 */

import assert from "node:assert/strict";
import { loopbackAddress } from "../../testkit/loopback.ts";
import { runPvdns, startPvdns } from "../../testkit/pvdns_process.ts";
import { startTwoPvds } from "../../testkit/two_pvds.ts";

Deno.test("pvdns pvds / query / flush / reload / stats talk to the daemon over its control API", async (t) => {
  const f = await startTwoPvds();
  const dir = await Deno.makeTempDir({ prefix: "pvdns-cli-" });
  const socket = `unix:${dir}/pvdns.sock`;
  const tcp = loopbackAddress({ port: 0 });
  const listener = Deno.listen({ hostname: tcp, port: 0 });
  const tcpPort = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const pvdns = await startPvdns({ config: f.config({ control: { listen: socket } }) });
  const env = { PVDNS_CONTROL: socket };
  const run = (args: string[], e: Record<string, string> = env) => runPvdns(args, { env: e });
  try {
    await t.step("the daemon says where its control API is", () => {
      assert.ok(
        pvdns.output().includes(`pvdns: control API on ${socket}`),
        pvdns.output().join("\n"),
      );
    });

    await t.step("pvdns pvds prints a table; --json the PvDs", async () => {
      const r = await run(["pvds"]);
      assert.equal(r.code, 0, r.stderr);
      const lines = r.stdout.trim().split("\n");
      assert.match(
        lines[0]!,
        /^PVD\s+ORIGIN\s+KIND\s+DEFAULT\s+PRIO\s+IFACE\s+SOURCES\s+SERVERS\s+ZONES$/,
      );
      assert.match(lines[1]!, /^home\.example\.net\s+config\s+explicit\s+yes\s+100\s+-\s+/);
      assert.match(
        lines[2]!,
        new RegExp(
          `^vpn\\.example\\.com\\s+config\\s+explicit\\s+no\\s+0\\s+lo\\s+${f.vpnSrc}\\s+`,
        ),
      );
      assert.equal(lines.at(-1), "3 PvD(s)");
      const j = await run(["pvds", "--json"]);
      assert.deepEqual(JSON.parse(j.stdout).pvds.map((p: { id: string }) => p.id), [
        "home.example.net",
        "vpn.example.com",
        "dead.example.org",
      ]);
    });

    await t.step(
      "pvdns query shows the answer, the PvD, the source address and the time",
      async () => {
        const r = await run(["query", "www.corp.test", "--pvd", "vpn.example.com"]);
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, /^query: {3}www\.corp\.test\. A$/m);
        assert.match(r.stdout, /^answer: {2}www\.corp\.test\. \d+ IN A 10\.8\.1\.20$/m);
        assert.match(r.stdout, /^status: {2}NOERROR, from upstream, in \d+\.\d ms$/m);
        assert.match(r.stdout, /^pvd: {5}vpn\.example\.com$/m);
        assert.match(
          r.stdout,
          new RegExp(`^source:  ${f.vpnSrc.replace(/\./g, "\\.")} \\(bind to it`, "m"),
        );
        const cached = await run(["query", "www.corp.test", "A"]);
        assert.match(cached.stdout, /from cache/);
        const j = JSON.parse((await run(["query", "home.test", "TXT", "--json"])).stdout);
        assert.equal(j.pvd, "home.example.net");
        assert.equal(j.Answer[0].data, '"v=spf1 -all"');
        const nx = await run(["query", "nope.home.test"]);
        assert.equal(nx.code, 1);
        assert.match(nx.stdout, /status: {2}NXDOMAIN/);
        const unknown = await run(["query", "www.home.test", "--pvd", "nope.example"]);
        assert.equal(unknown.code, 1);
        assert.match(unknown.stderr, /"nope\.example" is not a known PvD id/);
        const bad = await run(["query", "a..b"]);
        assert.equal(bad.code, 2);
        assert.match(bad.stderr, /"a\.\.b" is not a valid domain name/);
      },
    );

    await t.step("pvdns flush [--pvd]", async () => {
      const one = await run(["flush", "--pvd", "vpn.example.com"]);
      assert.equal(one.code, 0, one.stderr);
      assert.match(one.stdout, /^flushed [1-9]\d* cache entr(y|ies) of PvD vpn\.example\.com$/m);
      const all = await run(["flush"]);
      assert.match(all.stdout, /^flushed \d+ cache entr(y|ies) of every PvD$/m);
      assert.match((await run(["query", "www.corp.test"])).stdout, /from upstream/);
    });

    await t.step("pvdns reload reads the config file again", async () => {
      await Deno.writeTextFile(
        pvdns.configPath!,
        JSON.stringify(f.config({ control: { listen: socket } }, { withoutVpn: true })),
      );
      const r = await run(["reload"]);
      assert.equal(r.code, 0, r.stderr);
      // The daemon also watches the file: it may have applied the change already.
      assert.match(r.stdout, /^reloaded: (removed vpn\.example\.com|nothing changed)$/m);
      assert.doesNotMatch((await run(["pvds"])).stdout, /vpn\.example\.com/);
      await Deno.writeTextFile(
        pvdns.configPath!,
        '{ "pvds": [{ "id": "x", "servers": ["300.1.1.1"] }] }',
      );
      const refused = await run(["reload"]);
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /300\.1\.1\.1/);
    });

    await t.step("pvdns stats summarises the metrics per PvD", async () => {
      const r = await run(["stats"]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^queries: {4}\d+ \(api \d+\)$/m);
      assert.match(
        r.stdout,
        /^PVD\s+ANSWERS\s+NOERROR\s+NXDOMAIN\s+SERVFAIL\s+REFUSED\s+CACHE-HITS/m,
      );
      assert.match(r.stdout, /^home\.example\.net\s+\d+\s+\d+\s+1\s+/m);
      assert.match(r.stdout, /^reloads: {4}[12] ok, [12] refused$/m);
    });

    await t.step("no daemon: a clear message and exit status 3", async () => {
      const r = await run(["pvds"], { PVDNS_CONTROL: `unix:${dir}/nothing.sock` });
      assert.equal(r.code, 3);
      assert.match(r.stderr, /not reachable at unix:.*nothing\.sock: is `pvdns serve` running/);
      const tcpDown = await run(["stats", "--control", `http://${tcp}:${tcpPort}`]);
      assert.equal(tcpDown.code, 3);
    });
  } finally {
    await pvdns.stop();
  }

  await t.step("--token for a TCP control listener (PVDNS_TOKEN works too)", async () => {
    const daemon = await startPvdns({
      config: f.config({ control: { listen: `${tcp}:${tcpPort}`, token: "s3cret" } }),
    });
    try {
      const url = `http://${tcp}:${tcpPort}`;
      const denied = await run(["pvds", "--control", url], {});
      assert.equal(denied.code, 1);
      assert.match(denied.stderr, /Authorization: Bearer header is missing/);
      const ok = await run(["pvds", "--control", url, "--token", "s3cret"], {});
      assert.equal(ok.code, 0, ok.stderr);
      const env = await run(["query", "www.home.test"], {
        PVDNS_CONTROL: url,
        PVDNS_TOKEN: "s3cret",
      });
      assert.equal(env.code, 0, env.stderr);
      assert.match(env.stdout, /192\.0\.2\.1/);
    } finally {
      await daemon.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      await f.stop();
    }
  });
});

Deno.test("pvdns --version", async () => {
  const r = await runPvdns(["--version"]);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /^pvdns \d+\.\d+\.\d+\n$/);
});

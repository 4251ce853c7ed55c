/**
 * strictRoutes and `pvdns doctor` on real networks: a host namespace with two links, a PvD whose
 * source address sits on link A while the main routing table sends its server's traffic out of
 * link B. `doctor` must flag it, and `serve` with strictRoutes must answer SERVFAIL without a
 * single packet on either link; once policy routing sends the source out of its own link,
 * `doctor` is happy.
 *
 * @module
 */

import assert from "node:assert/strict";
import { dig } from "../../testkit/dig.ts";
import { startDnsmasq } from "../../testkit/dnsmasq.ts";
import { execOk, sleep } from "../../testkit/exec.ts";
import { createNetns, createVethPair } from "../../testkit/netns.ts";
import { runPvdns, startPvdns } from "../../testkit/pvdns_process.ts";

/** Starts tcpdump on `iface` inside `ns`, printing packets as text; `stop()` returns the lines. */
async function capture(ns: string, iface: string) {
  const child = new Deno.Command("ip", {
    args: ["netns", "exec", ns, "tcpdump", "-i", iface, "-n", "-l", "udp port 53 or tcp port 53"],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  const collect = (async () => {
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let rest = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      const parts = (rest + value).split("\n");
      rest = parts.pop() ?? "";
      lines.push(...parts.filter((l) => l.trim()));
    }
  })();
  const errReader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  for (let i = 0; i < 50 && !seen.includes("listening on"); i++) {
    const r = await Promise.race([errReader.read(), sleep(200).then(() => null)]);
    if (r && !r.done) seen += r.value;
  }
  assert.ok(seen.includes("listening on"), `tcpdump did not start: ${seen}`);
  const drain = (async () => {
    while (!(await errReader.read()).done) { /* keep stderr flowing */ }
  })();
  return {
    async stop(): Promise<string[]> {
      await sleep(300);
      child.kill("SIGINT");
      await child.status;
      await collect;
      await drain;
      return lines;
    },
  };
}

Deno.test("strictRoutes fails closed when the kernel would use another PvD's link; doctor says why", async (t) => {
  const host = await createNetns({ prefix: "sh" });
  const netA = await createNetns({ prefix: "sa" });
  const netB = await createNetns({ prefix: "sb" });
  const cleanups: (() => Promise<unknown>)[] = [
    () => netB.delete(),
    () => netA.delete(),
    () => host.delete(),
  ];
  try {
    const linkA = await createVethPair({ netns: host.name, addresses: ["198.18.10.2/24"] }, {
      netns: netA.name,
      addresses: ["198.18.10.1/24"],
    });
    const linkB = await createVethPair({ netns: host.name, addresses: ["198.18.20.2/24"] }, {
      netns: netB.name,
      addresses: ["198.18.20.1/24"],
    });
    // The host's main table sends everything out of link B.
    await execOk(["ip", "route", "add", "default", "via", "198.18.20.1"], { netns: host.name });
    await execOk(["ip", "route", "add", "198.18.10.0/24", "dev", linkA.b], { netns: netA.name })
      .catch(() => {});
    const dns = await startDnsmasq({
      address: "198.51.100.53",
      netns: netA.name,
      zones: ["strict.test"],
      records: [{ name: "www.strict.test", type: "A", value: "198.51.100.80" }],
    });
    cleanups.unshift(() => dns.stop());
    await execOk(["ip", "route", "add", "default", "via", "198.18.10.2"], { netns: netA.name });
    const config = {
      listen: ["127.0.0.53:53"],
      pvds: [{
        id: "a.example",
        interface: linkA.a,
        prefixes: ["198.18.10.0/24"],
        sourceAddresses: ["198.18.10.2"],
        servers: ["198.51.100.53"],
        default: true,
        strictRoutes: true,
      }],
    };
    const configPath = await Deno.makeTempFile({ suffix: ".json" });
    cleanups.push(() => Deno.remove(configPath));
    await Deno.writeTextFile(configPath, JSON.stringify(config));

    await t.step("doctor flags the server reached through link B", async () => {
      const r = await runPvdns(["doctor", "--config", configPath], { netns: host.name });
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.match(
        r.stdout,
        new RegExp(
          `FAIL 198\\.51\\.100\\.53 from 198\\.18\\.10\\.2: leaves through ${linkB.a}, not the PvD's ${linkA.a}`,
        ),
      );
    });

    await t.step("serve with strictRoutes: SERVFAIL, nothing on either link", async () => {
      const capA = await capture(host.name, linkA.a);
      const capB = await capture(host.name, linkB.a);
      const pvdns = await startPvdns({ config, netns: host.name });
      try {
        assert.ok(
          pvdns.output().some((l) => /strictRoutes: not using 198\.51\.100\.53/.test(l)),
          pvdns.output().join("\n"),
        );
        const r = await dig({ server: "127.0.0.53", name: "www.strict.test", netns: host.name });
        assert.equal(r.status, "SERVFAIL");
      } finally {
        await pvdns.stop();
      }
      const [a, b] = [await capA.stop(), await capB.stop()];
      assert.deepEqual(a, [], "no packet on link A");
      assert.deepEqual(b, [], "no packet on link B");
      assert.deepEqual(await dns.queryLog(), []);
    });

    await t.step(
      "with policy routing for the PvD's source, doctor passes and answers flow on link A",
      async () => {
        await execOk(["ip", "rule", "add", "from", "198.18.10.2", "table", "100"], {
          netns: host.name,
        });
        await execOk([
          "ip",
          "route",
          "add",
          "default",
          "via",
          "198.18.10.1",
          "dev",
          linkA.a,
          "table",
          "100",
        ], { netns: host.name });
        const r = await runPvdns(["doctor", "--config", configPath], { netns: host.name });
        assert.equal(r.code, 0, r.stdout + r.stderr);
        assert.match(
          r.stdout,
          new RegExp(`ok   198\\.51\\.100\\.53 from 198\\.18\\.10\\.2: via ${linkA.a}`),
        );
        const capA = await capture(host.name, linkA.a);
        const capB = await capture(host.name, linkB.a);
        const pvdns = await startPvdns({ config, netns: host.name });
        try {
          const answer = await dig({
            server: "127.0.0.53",
            name: "www.strict.test",
            netns: host.name,
          });
          assert.equal(answer.status, "NOERROR");
          assert.deepEqual(answer.answers.map((x) => x.data), ["198.51.100.80"]);
        } finally {
          await pvdns.stop();
        }
        assert.deepEqual(await capB.stop(), [], "still nothing on link B");
        const onA = await capA.stop();
        assert.ok(
          onA.some((l) => l.includes("198.18.10.2.") && l.includes("> 198.51.100.53.53:")),
          `the query left on link A from the PvD's address: ${onA.join("\n")}`,
        );
        assert.ok((await dns.queryLog()).every((q) => q.from === "198.18.10.2"));
      },
    );
  } finally {
    for (const c of cleanups) await c().catch(() => {});
  }
});

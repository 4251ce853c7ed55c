/**
 * Encrypted first (issue 14): a PvD with a DoT and a Do53 server on the same box (two Unbound
 * processes on one address: Do53 on 53, DoT on 853, so DoT alone can be killed), as an RA with
 * DNR and RDNSS would give. A capture on loopback shows what went to port 53 in clear:
 * - `prefer` (the default for such a PvD): nothing while DoT is up; with DoT killed, Do53 is
 *   used, counted and logged once; with DoT back, encrypted again and nothing in clear;
 * - `strict`: nothing in clear ever; with DoT killed, SERVFAIL.
 *
 * @module
 */

import assert from "node:assert/strict";
import { startCapture } from "../../testkit/capture.ts";
import { dig } from "../../testkit/dig.ts";
import { loopbackAddress } from "../../testkit/loopback.ts";
import { startPvdns } from "../../testkit/pvdns_process.ts";
import { makeTestPki } from "../../testkit/test_pki.ts";
import { startUnbound, type Unbound } from "../../testkit/unbound.ts";

const ZONE = { records: [{ name: "enc.test", type: "A" as const, value: "192.0.2.7" }] };

/** Do53 only (its DoT and DoH on ports nobody uses) and DoT only, on one address. */
async function startPair(address: string, pki: Awaited<ReturnType<typeof makeTestPki>>) {
  const common = { address, tls: pki.good, ...ZONE, redirectZones: ["enc.test"] };
  const do53 = await startUnbound({ ...common, ports: { dns: 53, tls: 10853, https: 10443 } });
  const startDot = () => startUnbound({ ...common, ports: { dns: 10053, tls: 853, https: 11443 } });
  return { do53, dot: await startDot(), startDot };
}

async function metric(url: string, name: string, pvd: string): Promise<number> {
  const text = await (await fetch(url)).text();
  const m = new RegExp(`^${name}\\{pvd="${pvd.replaceAll(".", "\\.")}"\\} (\\d+)$`, "m").exec(text);
  return m ? Number(m[1]) : 0;
}

Deno.test("encryption: prefer uses Do53 only while DoT is down, strict never", async (t) => {
  const pki = await makeTestPki();
  const [preferAddress, strictAddress, listen, metrics] = [
    loopbackAddress(),
    loopbackAddress(),
    loopbackAddress(),
    loopbackAddress(),
  ];
  const prefer = await startPair(preferAddress, pki);
  const strict = await startPair(strictAddress, pki);
  const capture = await startCapture({
    interface: "lo",
    filter: `port 53 and (dst host ${preferAddress} or dst host ${strictAddress})`,
  });
  const pvdns = await startPvdns({
    config: {
      listen: [`${listen}:53`],
      metrics: { listen: `${metrics}:9153` },
      caFile: pki.caFile,
      upstream: { timeoutMs: 1000, deadlineMs: 3000, maxFails: 1 },
      pvds: [
        {
          id: "prefer.example",
          sourceAddresses: [loopbackAddress({ port: 0 })],
          servers: [`tls://${preferAddress}#${pki.authName}`, preferAddress],
          dnsZones: ["prefer.enc.test"],
        },
        {
          id: "strict.example",
          sourceAddresses: [loopbackAddress({ port: 0 })],
          servers: [`tls://${strictAddress}#${pki.authName}`, strictAddress],
          dnsZones: ["strict.enc.test"],
          encryption: "strict",
        },
      ],
    },
  });
  const url = `http://${metrics}:9153/metrics`;
  const clear = async (address: string) =>
    (await capture.packets()).filter((p) => p.dst === address && p.dport === 53).length;
  const ask = (name: string) => dig({ server: listen, name, timeSeconds: 4 });
  const running: Unbound[] = [prefer.do53, prefer.dot, strict.do53, strict.dot];
  try {
    await t.step("DoT up: every query over DoT, zero port-53 packets to either box", async () => {
      for (let i = 0; i < 10; i++) {
        for (const which of ["prefer", "strict"]) {
          const r = await ask(`up${i}.${which}.enc.test`);
          assert.deepEqual(r.answers.map((a) => a.data), ["192.0.2.7"]);
        }
      }
      assert.equal(await clear(preferAddress), 0);
      assert.equal(await clear(strictAddress), 0);
      assert.equal(await metric(url, "pvdns_encrypted_fallback_total", "prefer.example"), 0);
    });

    await t.step(
      "DoT killed: prefer asks Do53 (counted, logged once); strict SERVFAILs",
      async () => {
        await prefer.dot.stop();
        await strict.dot.stop();
        running.splice(running.indexOf(prefer.dot), 1);
        running.splice(running.indexOf(strict.dot), 1);
        for (let i = 0; i < 5; i++) {
          const r = await ask(`down${i}.prefer.enc.test`);
          assert.deepEqual(r.answers.map((a) => a.data), ["192.0.2.7"], `query ${i}`);
        }
        assert.equal(await clear(preferAddress), 5, "each of them over Do53");
        assert.equal(await metric(url, "pvdns_encrypted_fallback_total", "prefer.example"), 5);
        await pvdns.waitForLine(/PvD prefer\.example: every encrypted server is down/);
        const lines = pvdns.output().filter((l) => /every encrypted server is down/.test(l));
        assert.equal(lines.length, 1, "logged once, not per query");
        for (let i = 0; i < 3; i++) {
          const r = await ask(`down${i}.strict.enc.test`);
          assert.equal(r.status, "SERVFAIL");
        }
        assert.equal(await clear(strictAddress), 0, "strict never asks in clear");
      },
    );

    await t.step("DoT back: encrypted again, nothing more in clear", async () => {
      const dot = await prefer.startDot();
      running.push(dot);
      // The down server is probed (1 s, then backing off); wait until pvdns says it is back.
      await pvdns.waitForLine(/PvD prefer\.example: an encrypted server is back/, 20_000);
      const before = await clear(preferAddress);
      for (let i = 0; i < 5; i++) {
        const r = await ask(`back${i}.prefer.enc.test`);
        assert.deepEqual(r.answers.map((a) => a.data), ["192.0.2.7"]);
      }
      assert.equal(await clear(preferAddress), before, "no port-53 packet after DoT came back");
      const seen = (await dot.queryLog()).filter((q) => q.name.startsWith("back"));
      assert.equal(seen.length, 5, "the five went over DoT");
    });
  } finally {
    await pvdns.stop();
    await capture.stop();
    for (const u of running) await u.stop();
    await pki.remove();
  }
});

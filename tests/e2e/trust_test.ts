/**
 * What a network says is not taken on faith (issue 14), through a running daemon:
 * - AD: a resolver that sets AD on everything reaches clients with AD only through a PvD whose
 *   config says `trustAd: true`; over UDP and TCP (dig), dnspython, cached replies, the control
 *   API's JSON, its DoH endpoint (whose answers are padded to 468 octets) and the library;
 * - rebinding: with `rebind: "block"`, a public name answered with a LAN address becomes NODATA
 *   (counted), while a name of the PvD's own zone keeps its private address.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import * as packet from "dns-packet";
import { connect } from "../../mod.ts";
import { dig } from "../../testkit/dig.ts";
import { dnspythonQuery } from "../../testkit/dnspython.ts";
import { exec } from "../../testkit/exec.ts";
import { loopbackAddress } from "../../testkit/loopback.ts";
import { startPvdns } from "../../testkit/pvdns_process.ts";
import { startScriptedUpstream } from "../../testkit/scripted_upstream.ts";

/** Every name gets an address; the resolver claims to have validated all of them. */
const script = (name: string) => {
  if (name === "evil.example.com") return { addresses: ["192.168.1.1"], ad: true };
  if (name === "printer.cafe.test") return { addresses: ["10.0.0.5"], ad: true };
  if (name === "mixed.example.com") return { addresses: ["10.0.0.9", "198.51.100.9"], ad: true };
  return { addresses: ["192.0.2.44"], ad: true };
};

Deno.test("trust: AD only from a trustAd PvD, on every path; rebinding blocked where asked", async (t) => {
  const [plainServer, trustedServer, cafeServer, listen, metrics] = [
    loopbackAddress(),
    loopbackAddress(),
    loopbackAddress(),
    loopbackAddress(),
    loopbackAddress(),
  ];
  const upstreams = [plainServer, trustedServer, cafeServer].map((a) =>
    startScriptedUpstream(a, script)
  );
  const dir = await Deno.makeTempDir({ prefix: "pvdns-sock-" });
  const socket = `${dir}/control.sock`;
  const source = () => loopbackAddress({ port: 0 });
  const pvdns = await startPvdns({
    config: {
      listen: [`${listen}:53`],
      control: { listen: `unix:${socket}` },
      metrics: { listen: `${metrics}:9153` },
      pvds: [
        {
          id: "plain.example",
          sourceAddresses: [source()],
          servers: [plainServer],
          dnsZones: ["plain.test"],
        },
        {
          id: "trusted.example",
          sourceAddresses: [source()],
          servers: [trustedServer],
          dnsZones: ["trusted.test"],
          trustAd: true,
        },
        {
          id: "cafe.example",
          sourceAddresses: [source()],
          servers: [cafeServer],
          dnsZones: ["cafe.test"],
          default: true,
          rebind: "block",
        },
      ],
    },
  });
  const client = connect(`unix:${socket}`);
  try {
    const names = { plain: "sshfp.plain.test", trusted: "sshfp.trusted.test" };
    for (const [which, name] of Object.entries(names)) {
      const wanted = which === "trusted";
      await t.step(
        `${which}: dig +adflag and +dnssec over UDP and TCP, first and cached`,
        async () => {
          for (const tcp of [false, true]) {
            for (const extra of [["+adflag"], ["+dnssec", "+noadflag"], ["+adflag"]]) {
              const r = await dig({ server: listen, name, tcp, extra });
              assert.equal(r.status, "NOERROR");
              assert.equal(
                r.flags.includes("ad"),
                wanted,
                `${name} ${extra} tcp=${tcp}: ${r.flags}`,
              );
            }
          }
        },
      );
      await t.step(`${which}: dnspython with DO`, async () => {
        const r = await dnspythonQuery({ server: listen, name, dnssecOk: true });
        assert.equal(r.flags.includes("ad"), wanted, `${r.flags}`);
      });
      await t.step(`${which}: the control API's JSON (library) and DoH`, async () => {
        const json = await client.resolveJson(name, "A");
        assert.equal(json.AD, wanted);
        const query = Buffer.from(packet.encode({
          type: "query",
          id: 77,
          flags: packet.RECURSION_DESIRED | packet.AUTHENTIC_DATA,
          questions: [{ name, type: "A", class: "IN" }],
          additionals: [
            {
              type: "OPT",
              name: ".",
              udpPayloadSize: 1232,
              flags: packet.DNSSEC_OK,
            } as unknown as packet.Answer,
          ],
        }));
        await Deno.writeFile(`${dir}/q.bin`, query);
        const r = await exec([
          "curl",
          "-sS",
          "--max-time",
          "10",
          "--unix-socket",
          socket,
          "-H",
          "content-type: application/dns-message",
          "--data-binary",
          `@${dir}/q.bin`,
          "-o",
          `${dir}/a.bin`,
          "http://localhost/dns-query",
        ]);
        assert.equal(r.code, 0, r.stderr);
        const bytes = await Deno.readFile(`${dir}/a.bin`);
        assert.equal(bytes.length % 468, 0, `the DoH answer is padded (RFC 8467): ${bytes.length}`);
        const answer = packet.decode(Buffer.from(bytes));
        assert.equal(((answer.flags ?? 0) & packet.AUTHENTIC_DATA) !== 0, wanted);
      });
    }

    await t.step("pvdns's own answers never carry AD", async () => {
      const r = await dig({ server: listen, name: "localhost", extra: ["+adflag"] });
      assert.equal(r.flags.includes("ad"), false);
    });

    await t.step(
      "rebinding: a public name pointing into the LAN is NODATA and counted",
      async () => {
        const evil = await dig({ server: listen, name: "evil.example.com" });
        assert.equal(evil.status, "NOERROR");
        assert.deepEqual(evil.answers, []);
        const mixed = await dig({ server: listen, name: "mixed.example.com" });
        assert.deepEqual(mixed.answers.map((a) => a.data), ["198.51.100.9"]);
        const own = await dig({ server: listen, name: "printer.cafe.test" });
        assert.deepEqual(own.answers.map((a) => a.data), ["10.0.0.5"], "its own zone keeps it");
        const text = await (await fetch(`http://${metrics}:9153/metrics`)).text();
        const m = /^pvdns_rebind_blocked_total\{pvd="cafe\.example"\} (\d+)$/m.exec(text);
        assert.ok(m, "the counter is exported");
        assert.equal(Number(m[1]), 2, "two records dropped");
        assert.doesNotMatch(text, /pvdns_rebind_blocked_total\{pvd="plain\.example"\} [1-9]/);
      },
    );

    await t.step(
      "without rebind the same private answer is served (the rule is per PvD)",
      async () => {
        const r = await dig({ server: listen, name: "lan.plain.test" });
        assert.deepEqual(r.answers.map((a) => a.data), ["192.0.2.44"]);
        assert.ok(upstreams[0]!.asked.includes("lan.plain.test"));
      },
    );
  } finally {
    await client.close();
    await pvdns.stop();
    for (const u of upstreams) await u.close();
    await Deno.remove(dir, { recursive: true });
  }
});

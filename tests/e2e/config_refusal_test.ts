/**
 * Config files that must be refused, never crash pvdns: deep nesting, a huge file, binary
 * garbage, a listen address that is not the host's. At start: exit 2 and a message naming the
 * path, no stack trace. On reload: the same message, and the running config keeps serving.
 *
 * @module
 */

import assert from "node:assert/strict";
import { dig } from "../../testkit/dig.ts";
import { startDnsmasq } from "../../testkit/dnsmasq.ts";
import { loopbackAddress } from "../../testkit/loopback.ts";
import {
  configPermissions,
  runPvdns,
  servePermissions,
  startPvdns,
} from "../../testkit/pvdns_process.ts";

/** A V8 stack frame line, as an uncaught error prints them. */
const STACK_FRAME = /^\s+at .+:\d+:\d+\)?$/m;

/** Bad files: name, content, what the message must say. */
function badFiles(good: object): { name: string; bytes: Uint8Array; message: RegExp }[] {
  const text = (t: string) => new TextEncoder().encode(t);
  const goodText = JSON.stringify(good);
  const deep = goodText.replace(/}$/, `, "x": ${"[".repeat(5000)}${"]".repeat(5000)} }`);
  const garbage = new Uint8Array(4096);
  for (let i = 0; i < garbage.length; i++) garbage[i] = (i * 7919 + 13) & 0xff;
  const nonLocal = JSON.stringify({ ...good, listen: ["192.0.2.250:53"], allow: ["127.0.0.0/8"] });
  return [
    { name: "5,000 levels of nesting", bytes: text(deep), message: /x\[0\].*too deeply nested/ },
    {
      name: "a 3 MB file",
      bytes: text(goodText.replace(/}$/, `, "pad": "${"a".repeat(3 << 20)}" }`)),
      message: /file too large \(\d+ bytes; at most 1048576\)/,
    },
    { name: "binary garbage", bytes: garbage, message: /not a text file|\d+:\d+: / },
    {
      name: "a listen address that is not the host's",
      bytes: text(nonLocal),
      message: /listen\[0\]: "192\.0\.2\.250:53" is not an address of this host/,
    },
  ];
}

Deno.test("config refusal: bad files exit 2 with a message at start, and a reload keeps the old config", async (t) => {
  const [server, source, listen] = [
    loopbackAddress(),
    loopbackAddress({ port: 0 }),
    loopbackAddress(),
  ];
  const upstream = await startDnsmasq({
    address: server,
    zones: ["home.test"],
    records: [{ name: "www.home.test", type: "A", value: "192.0.2.1" }],
  });
  const good = {
    listen: [`${listen}:53`],
    pvds: [{ id: "home.example", sourceAddresses: [source], servers: [server] }],
  };
  const dir = await Deno.makeTempDir({ prefix: "pvdns-config-" });
  try {
    for (const bad of badFiles(good)) {
      await t.step(`at start: ${bad.name}`, async () => {
        const path = `${dir}/pvdns.jsonc`;
        await Deno.writeFile(path, bad.bytes);
        const r = await runPvdns(["serve", "--config", path], {
          permissions: servePermissions(configPermissions(undefined, path)),
        });
        const out = r.stdout + r.stderr;
        assert.equal(r.code, 2, out.slice(0, 2000));
        assert.match(out, /configuration refused/);
        assert.match(out, bad.message);
        assert.doesNotMatch(out, STACK_FRAME, "no stack trace");
      });
    }

    const pvdns = await startPvdns({ config: good });
    const path = pvdns.configPath!;
    try {
      const answer = async () =>
        (await dig({ server: listen, name: "www.home.test" })).answers.map((x) => x.data);
      assert.deepEqual(await answer(), ["192.0.2.1"]);
      let refusals = 0;
      for (const bad of badFiles(good)) {
        await t.step(`on reload: ${bad.name}`, async () => {
          await Deno.writeFile(path, bad.bytes);
          pvdns.signal("SIGHUP");
          refusals++;
          // One refusal line per reload; wait for this one.
          for (let i = 0; i < 100; i++) {
            if (pvdns.output().filter((l) => /reload of .* refused/.test(l)).length >= refusals) {
              break;
            }
            await new Promise((r) => setTimeout(r, 100));
          }
          await pvdns.waitForLine(bad.message);
          assert.doesNotMatch(pvdns.output().join("\n"), STACK_FRAME, "no stack trace");
          assert.deepEqual(await answer(), ["192.0.2.1"], "the old config keeps answering");
        });
      }
      const status = await Promise.race([
        pvdns.exited,
        new Promise<undefined>((r) => setTimeout(() => r(undefined), 200)),
      ]);
      assert.equal(status, undefined, "pvdns is still running");
    } finally {
      await pvdns.stop();
    }
  } finally {
    await upstream.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

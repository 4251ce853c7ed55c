/**
 * `deno task compile` makes one `pvdns` binary (dist/pvdns, git-ignored); the binary prints its
 * version and, as `pvdns serve`, answers a query through a dnsmasq upstream. Compiled once per
 * test run.
 *
 * `deno compile` needs Deno's `denort` runtime for this platform, which it downloads from
 * dl.deno.land unless `DENORT_BIN` names a local copy or one is already in `$DENO_DIR/dl/`.
 * The npm `deno` package does not ship it, and the full `deno` binary cannot stand in (it
 * ignores the embedded program). Where neither is there the test is ignored, its name says why,
 * and nothing is downloaded.
 *
 * @module
 */

import assert from "node:assert/strict";
import { dig } from "../../testkit/dig.ts";
import { startDnsmasq } from "../../testkit/dnsmasq.ts";
import { exec } from "../../testkit/exec.ts";
import { loopbackAddress } from "../../testkit/loopback.ts";
import { REPO_ROOT } from "../../testkit/pvdns_process.ts";

/** Why the denort runtime cannot be had here, or undefined when it can. */
async function denortMissing(): Promise<string | undefined> {
  if (Deno.env.get("DENORT_BIN")) return undefined;
  const info = await exec([Deno.execPath(), "info", "--json"], { timeoutMs: 30_000 });
  const denoDir = info.code === 0 ? JSON.parse(info.stdout).denoDir : undefined;
  const zip = `${denoDir}/dl/release/v${Deno.version.deno}/denort-x86_64-unknown-linux-gnu.zip`;
  if (denoDir && await Deno.stat(zip).then(() => true, () => false)) return undefined;
  // Never try the download from a test: it would look dl.deno.land up through the host.
  return `no denort runtime: DENORT_BIN unset and none cached in ${denoDir}/dl`;
}

const missing = Deno.env.get("PVDNS_SKIP_COMPILE")
  ? "PVDNS_SKIP_COMPILE set"
  : await denortMissing();

Deno.test({
  name: `deno task compile: the binary prints its version and serves a query${
    missing ? ` (ignored: ${missing})` : ""
  }`,
  ignore: missing !== undefined,
  async fn() {
    const built = await exec([Deno.execPath(), "task", "compile"], {
      cwd: REPO_ROOT,
      timeoutMs: 300_000,
    });
    assert.equal(built.code, 0, `deno task compile:\n${built.stdout}\n${built.stderr}`);
    const binary = `${REPO_ROOT}/dist/pvdns`;

    const version = await exec([binary, "--version"]);
    assert.equal(version.code, 0, version.stderr);
    assert.match(version.stdout, /^pvdns \d+\.\d+\.\d+\n$/);

    const [srv, src, listen] = [loopbackAddress(), loopbackAddress({ port: 0 }), loopbackAddress()];
    const up = await startDnsmasq({
      address: srv,
      zones: ["c.test"],
      records: [{ name: "www.c.test", type: "A", value: "192.0.2.44" }],
    });
    assert.ok((await Deno.stat(`${REPO_ROOT}/dist/pvdns-ffi`)).isFile, "the FFI build exists too");
    // The compiled binary may read configs under /etc/pvdns only (least privilege).
    await Deno.mkdir("/etc/pvdns", { recursive: true });
    const config = await Deno.makeTempFile({ dir: "/etc/pvdns", suffix: ".jsonc" });
    await Deno.writeTextFile(
      config,
      JSON.stringify({
        listen: [`${listen}:53`],
        pvds: [{ id: "home.example.net", sourceAddresses: [src], servers: [srv] }],
      }),
    );
    const child = new Deno.Command(binary, {
      args: ["serve", "--config", config],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const output = child.output();
    try {
      let answer;
      for (let i = 0; i < 50; i++) {
        answer = await dig({ server: listen, name: "www.c.test", timeSeconds: 1 });
        if (answer.status === "NOERROR") break;
        await new Promise((r) => setTimeout(r, 200));
      }
      assert.equal(answer?.status, "NOERROR");
      assert.deepEqual(answer!.answers.map((a) => a.data), ["192.0.2.44"]);
    } finally {
      child.kill("SIGTERM");
      const out = await output;
      await up.stop();
      await Deno.remove(config);
      assert.match(new TextDecoder().decode(out.stdout), /pvdns: ready/);
    }
  },
});

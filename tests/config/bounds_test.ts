/**
 * The config loader's own bounds: nesting depth, size, bytes that are not text, and listen
 * addresses checked against the host's (with the host's addresses injected).
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  ConfigError,
  loadConfigFile,
  MAX_CONFIG_BYTES,
  MAX_CONFIG_DEPTH,
  parseConfig,
} from "../../src/config/parse.ts";
import { nonLocalListenErrors } from "../../src/host/local_addresses.ts";

const GOOD = `{ "pvds": [{ "id": "home.example", "sourceAddresses": ["192.0.2.10"],
  "servers": ["192.0.2.1"] }] }`;

function refusal(f: () => unknown): readonly string[] {
  try {
    f();
  } catch (e) {
    assert.ok(e instanceof ConfigError, `a ConfigError, not ${e}`);
    return e.errors;
  }
  assert.fail("accepted");
}

Deno.test("config bounds: nesting, size, text", async (t) => {
  await t.step("nesting past the bound names the path; up to it parses", () => {
    const nested = (n: number) =>
      GOOD.replace(/}\s*$/, `, "x": ${"[".repeat(n)}${"]".repeat(n)} }`);
    const errors = refusal(() => parseConfig(nested(5000)));
    assert.equal(errors.length, 1);
    assert.match(errors[0]!, /^x(\[0\])+: too deeply nested \(more than 32 levels\)$/);
    // At the bound the file is nested deep enough to parse, and fails only on the unknown key.
    assert.deepEqual(refusal(() => parseConfig(nested(MAX_CONFIG_DEPTH - 1))), ["x: unknown key"]);
  });

  await t.step("brackets inside strings and comments are not nesting", () => {
    const text = GOOD.replace(/}\s*$/, `, // ${"[".repeat(100)}\n "x": "${"{".repeat(100)}" }`);
    assert.deepEqual(refusal(() => parseConfig(text)), ["x: unknown key"]);
  });

  await t.step("a file over the size bound is refused before it is read", async () => {
    const dir = await Deno.makeTempDir();
    try {
      const path = `${dir}/big.jsonc`;
      await Deno.writeTextFile(path, GOOD + " ".repeat(MAX_CONFIG_BYTES));
      const e = await loadConfigFile(path).catch((e) => e);
      assert.ok(e instanceof ConfigError);
      assert.match(e.errors[0]!, /big\.jsonc: file too large \(\d+ bytes; at most 1048576\)/);
      assert.equal(
        refusal(() => parseConfig(GOOD + " ".repeat(MAX_CONFIG_BYTES)))[0],
        `config: file too large (${GOOD.length + MAX_CONFIG_BYTES} characters; at most 1048576)`,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });

  await t.step(
    "bytes that are not UTF-8 are refused as not text; garbage text is capped",
    async () => {
      const dir = await Deno.makeTempDir();
      try {
        const path = `${dir}/bin.jsonc`;
        await Deno.writeFile(path, new Uint8Array([0x7b, 0xff, 0xfe, 0x00, 0x7d]));
        const e = await loadConfigFile(path).catch((e) => e);
        assert.ok(e instanceof ConfigError);
        assert.deepEqual(e.errors, [`${path}: not a text file (the bytes are not UTF-8)`]);
        const errors = refusal(() => parseConfig("@ # ! ".repeat(500)));
        assert.equal(errors.length, 21, "20 syntax errors and a count of the rest");
        assert.match(errors[20]!, /^… and \d+ more syntax errors$/);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  );
});

Deno.test("config bounds: listen addresses must be the host's", () => {
  const config = parseConfig(`{
    "listen": ["127.0.0.53:53", "192.0.2.10:53", "[2001:db8::5]:53", "0.0.0.0:5353"],
    "allow": ["192.0.2.0/24"],
    "metrics": { "listen": "198.51.100.7:9153" },
    "pvds": [{ "id": "home.example", "sourceAddresses": ["192.0.2.10"], "servers": ["192.0.2.1"] }]
  }`);
  assert.deepEqual(nonLocalListenErrors(config, new Set(["192.0.2.10", "2001:db8:0:0:0:0:0:5"])), [
    `metrics.listen: "198.51.100.7:9153" is not an address of this host (no interface has it)`,
  ]);
  assert.deepEqual(nonLocalListenErrors(config, new Set()), [
    `listen[1]: "192.0.2.10:53" is not an address of this host (no interface has it)`,
    `listen[2]: "[2001:db8::5]:53" is not an address of this host (no interface has it)`,
    `metrics.listen: "198.51.100.7:9153" is not an address of this host (no interface has it)`,
  ]);
});

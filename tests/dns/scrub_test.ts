import assert from "node:assert/strict";
import { readName } from "../../src/dns/scrub.ts";
import { parseQuery } from "../../src/dns/wire.ts";
import { buildQuery } from "../../testkit/wire.ts";

/** A message: a 12-byte header, then `bytes`. */
function message(...bytes: number[]): Uint8Array {
  return new Uint8Array([0, 1, 0x81, 0, 0, 1, 0, 0, 0, 0, 0, 0, ...bytes]);
}

Deno.test("readName(): keys are lower case with escaped odd bytes, as the query's name", async (t) => {
  const label = (s: string) => [s.length, ...[...s].map((c) => c.charCodeAt(0))];
  await t.step("plain, upper case folded", () => {
    const wire = message(...label("WWW"), ...label("Example"), ...label("TEST"), 0);
    assert.deepEqual(readName(wire, 12), { end: 12 + 18, key: "www.example.test." });
  });
  await t.step("a dot, a backslash, a space and a high byte inside labels", () => {
    const wire = message(4, 0x61, 0x2e, 0x62, 0x5c, 2, 0x20, 0xff, ...label("Test"), 0);
    const name = readName(wire, 12);
    assert.equal(name?.key, "a\\046b\\092.\\032\\255.test.");
    // The same key the pipeline makes for a client's question with those bytes.
    const q = parseQuery(new Uint8Array([...wire, 0, 1, 0, 1]).map((b, i) => i === 2 ? 1 : b));
    assert.equal(q.kind, "query");
    if (q.kind === "query") assert.equal(q.query.qname, name?.key);
  });
  await t.step("compressed: the pointer's target read, the end just past the pointer", () => {
    const wire = message(...label("a"), ...label("test"), 0, ...label("b"), 0xc0, 12);
    assert.deepEqual(readName(wire, 20), { end: 24, key: "b.a.test." });
  });
  await t.step("the root, and names made of many labels", () => {
    assert.deepEqual(readName(message(0), 12), { end: 13, key: "." });
    const long = Array.from({ length: 80 }, (_, i) => `l${i % 10}`).join(".");
    const q = buildQuery(1, long);
    assert.equal(readName(q, 12)?.key, `${long}.`);
  });
  await t.step("over 255 octets, a forward pointer and a loop are refused", () => {
    const tooLong = buildQuery(1, Array.from({ length: 130 }, () => "x").join("."));
    assert.equal(readName(tooLong, 12), null);
    assert.equal(readName(message(0xc0, 14, 0), 12), null);
    assert.equal(readName(message(0xc0, 12), 12), null);
  });
});

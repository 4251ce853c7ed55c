/**
 * src/control/http_body.ts: a body is never read past its bound. The bodies are real streams whose
 * source counts what was pulled from it, so "nothing read" and "cut at the bound" are measured.
 *
 * @module
 */

import assert from "node:assert/strict";
import { declaredBodyProblem, readBody } from "../../src/control/http_body.ts";

/** A body of `chunks` chunks of `size` bytes; `pulled()` tells how many bytes were taken. */
function countingBody(chunks: number, size: number) {
  let pulled = 0, sent = 0;
  const body = new ReadableStream<Uint8Array<ArrayBuffer>>({
    pull(controller) {
      if (sent === chunks) return controller.close();
      sent++;
      pulled += size;
      controller.enqueue(new Uint8Array(size).fill(0x61));
    },
  }, { highWaterMark: 0 });
  return { body, pulled: () => pulled };
}

function post(
  body: ReadableStream<Uint8Array<ArrayBuffer>> | Uint8Array<ArrayBuffer>,
  headers: Record<string, string>,
) {
  return new Request("http://localhost/dns-query", { method: "POST", body, headers });
}

Deno.test("readBody: the bound holds before and while the body streams", async (t) => {
  await t.step("a Content-Length over the bound: 413, not a byte read", async () => {
    const src = countingBody(1600, 65536); // 100 MiB if it were read
    const r = await readBody(post(src.body, { "content-length": String(1600 * 65536) }), 65535);
    assert.ok(r instanceof Response);
    assert.equal(r.status, 413);
    assert.equal(r.headers.get("connection"), "close");
    assert.match((await r.json()).detail, /content-length 104857600 is over the 65535 bytes/);
    assert.equal(src.pulled(), 0);
  });

  await t.step("no Content-Length (chunked): cut at the bound, the rest never pulled", async () => {
    const src = countingBody(1600, 16384);
    const r = await readBody(post(src.body, {}), 65535);
    assert.ok(r instanceof Response);
    assert.equal(r.status, 413);
    assert.match((await r.json()).detail, /passed the 65535 bytes/);
    assert.ok(src.pulled() <= 65535 + 16384, `pulled ${src.pulled()} bytes`);
  });

  await t.step("within the bound: the bytes, whole", async () => {
    const src = countingBody(3, 1000);
    const r = await readBody(post(src.body, {}), 65535);
    assert.ok(r instanceof Uint8Array);
    assert.equal(r.length, 3000);
    const exact = await readBody(post(new Uint8Array(512), {}), 512);
    assert.ok(exact instanceof Uint8Array);
    assert.equal(exact.length, 512);
    const over = await readBody(post(new Uint8Array(513), {}), 512);
    assert.ok(over instanceof Response);
    assert.equal(over.status, 413);
  });

  await t.step("a Content-Length that is no number: 400", () => {
    const r = declaredBodyProblem(
      new Request("http://localhost/", { method: "POST", headers: { "content-length": "12x" } }),
      100,
    );
    assert.equal(r?.status, 400);
    assert.equal(
      declaredBodyProblem(new Request("http://localhost/", { method: "POST" }), 100),
      undefined,
    );
  });
});

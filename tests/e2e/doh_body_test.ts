/**
 * Request bodies of the daemon's control API are bounded while they stream: a 100 MiB DoH POST
 * is refused with 413 before it is read (with a Content-Length), or cut at 65,535 bytes
 * (chunked), and the daemon's resident memory does not grow by anything like 100 MiB; without the
 * token the answer is 401 and the body is never read. The client is raw TCP so that it can keep
 * sending while it reads, as an attacker would; what it managed to send is measured.
 *
 * @module
 */

import assert from "node:assert/strict";
import { dig } from "../../testkit/dig.ts";
import { loopbackAddress } from "../../testkit/loopback.ts";
import { type PvdnsProcess, startPvdns } from "../../testkit/pvdns_process.ts";
import { startTwoPvds } from "../../testkit/two_pvds.ts";
import { buildQuery } from "../../testkit/wire.ts";

const TOKEN = "body-test-token";
const HUGE = 100 * 1024 * 1024;
const CHUNK = 65536;

/** A free TCP port on `address`. */
function freePort(address: string): number {
  const l = Deno.listen({ hostname: address, port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Resident memory of process `pid`, bytes (VmRSS of /proc/PID/status). */
async function rss(pid: number): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)![1]) * 1024;
}

interface PostResult {
  status: number;
  /** Body bytes the client got written before the answer came or the server hung up. */
  sent: number;
  text: string;
}

/**
 * POSTs a body of `total` bytes to `host:port` `path`, writing while it reads: stops writing when
 * the answer arrives or the server hangs up. Bounded: the connection is closed after 60 s.
 */
async function post(
  host: string,
  port: number,
  path: string,
  o: { total: number; chunked?: boolean; token?: string; body?: Uint8Array },
): Promise<PostResult> {
  const conn = await Deno.connect({ hostname: host, port });
  const bound = setTimeout(() => conn.close(), 60_000);
  const enc = new TextEncoder();
  const head = `POST ${path} HTTP/1.1\r\nHost: pvdns\r\nContent-Type: application/dns-message\r\n` +
    (o.token ? `Authorization: Bearer ${o.token}\r\n` : "") +
    (o.chunked ? "Transfer-Encoding: chunked\r\n" : `Content-Length: ${o.total}\r\n`) +
    "Connection: close\r\n\r\n";
  let text = "";
  let answered = false;
  const reading = (async () => {
    const buf = new Uint8Array(4096);
    try {
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) break;
        text += new TextDecoder().decode(buf.subarray(0, n));
        answered = true;
      }
    } catch { /* reset */ }
    answered = true;
  })();
  const writeAll = async (bytes: Uint8Array) => {
    for (let off = 0; off < bytes.length;) off += await conn.write(bytes.subarray(off));
  };
  let sent = 0;
  try {
    await writeAll(enc.encode(head));
    const data = o.body ?? new Uint8Array(CHUNK);
    const frame = o.chunked
      ? new Uint8Array([...enc.encode(`${data.length.toString(16)}\r\n`), ...data, 13, 10])
      : data;
    while (!answered && sent < o.total) {
      await writeAll(frame);
      sent += data.length;
    }
    if (o.chunked && !answered) await writeAll(enc.encode("0\r\n\r\n"));
  } catch { /* the server stopped reading and hung up */ }
  await reading;
  clearTimeout(bound);
  try {
    conn.close();
  } catch { /* closed by the bound */ }
  return { status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0), sent, text };
}

Deno.test("DoH and control bodies: refused before they are read, cut at the bound while streaming; RSS stays flat", async (t) => {
  const f = await startTwoPvds();
  const ctl = loopbackAddress({ port: 0 });
  const port = freePort(ctl);
  let pvdns: PvdnsProcess | undefined;
  try {
    pvdns = await startPvdns({
      config: f.config({ control: { listen: `${ctl}:${port}`, token: TOKEN } }),
    });
    const pid = pvdns.pid;
    // Warm up (first requests load code), then take the baseline.
    assert.equal((await dig({ server: f.listen, name: "www.home.test" })).status, "NOERROR");
    const query = buildQuery(0, "www.home.test");
    const small = await post(ctl, port, "/dns-query", {
      total: query.length,
      token: TOKEN,
      body: query,
    });
    assert.equal(small.status, 200, small.text);
    const before = await rss(pid);

    await t.step("100 MiB with Content-Length, token: 413 before the body is read", async () => {
      const r = await post(ctl, port, "/dns-query", { total: HUGE, token: TOKEN });
      assert.equal(r.status, 413, r.text.slice(0, 300));
      assert.match(r.text, /content-length 104857600 is over the 65535 bytes/);
      assert.ok(r.sent < HUGE / 4, `the client got ${r.sent} bytes out`);
    });

    await t.step("100 MiB chunked, token: cut at 65,535 bytes with 413", async () => {
      const r = await post(ctl, port, "/dns-query", { total: HUGE, chunked: true, token: TOKEN });
      assert.equal(r.status, 413, r.text.slice(0, 300));
      assert.match(r.text, /passed the 65535 bytes/);
      assert.ok(r.sent < HUGE / 4, `the client got ${r.sent} bytes out`);
    });

    await t.step("without the token: 401, the body never read", async () => {
      for (const chunked of [false, true]) {
        const r = await post(ctl, port, "/dns-query", { total: HUGE, chunked });
        assert.equal(r.status, 401, r.text.slice(0, 300));
        assert.ok(r.sent < HUGE / 4, `the client got ${r.sent} bytes out`);
      }
    });

    await t.step(
      "a control endpoint: Content-Length over limits.httpBodyBytes is 413",
      async () => {
        const r = await post(ctl, port, "/v1/reload", { total: 65537, token: TOKEN });
        assert.equal(r.status, 413, r.text.slice(0, 300));
        assert.match(r.text, /content-length 65537 is over the 65536 bytes/);
      },
    );

    await t.step("resident memory did not grow by anything near 100 MiB", async () => {
      const grown = (await rss(pid)) - before;
      assert.ok(grown < 32 * 1024 * 1024, `RSS grew by ${Math.round(grown / 1024 / 1024)} MiB`);
      const again = await post(ctl, port, "/dns-query", {
        total: query.length,
        token: TOKEN,
        body: query,
      });
      assert.equal(again.status, 200, "DoH stopped working");
    });
  } finally {
    await pvdns?.stop();
    await f.stop();
  }
});

/**
 * src/control/http_listener.ts on real sockets: the connection bound, the header, idle and request
 * timers, event streams left alone by them, a Unix socket created 0660 under umask 000, and a
 * close that ends what is open. The client is raw TCP (Deno.connect), so that half-sent requests
 * and dripping bodies are what the listener really sees.
 *
 * Waits are bounded (a deadline after which the test fails), never assertions about time.
 *
 * @module
 */

import assert from "node:assert/strict";
import { listenUnixSocket, serveOn } from "../../src/control/http_listener.ts";
import { readBody } from "../../src/control/http_body.ts";
import { loopbackAddress } from "../../testkit/loopback.ts";

const encoder = new TextEncoder();

/** Connects to `url` (`http://ADDR:PORT`). */
function connect(url: string): Promise<Deno.TcpConn> {
  const u = new URL(url);
  return Deno.connect({ hostname: u.hostname, port: Number(u.port) });
}

/**
 * Reads `conn` until the peer closes it (true) or `boundMs` passes (false; the conn is then
 * closed here). Returns what was read as text.
 */
async function readUntilClosed(
  conn: Deno.Conn,
  boundMs = 10_000,
): Promise<{ closed: boolean; text: string }> {
  let text = "";
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      conn.close();
    } catch { /* closed */ }
  }, boundMs);
  const buf = new Uint8Array(4096);
  try {
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      text += new TextDecoder().decode(buf.subarray(0, n));
    }
  } catch {
    // reset by the peer counts as closed, unless we closed it
  } finally {
    clearTimeout(timer);
  }
  if (!timedOut) {
    try {
      conn.close();
    } catch { /* closed */ }
  }
  return { closed: !timedOut, text };
}

/** Polls `cond` until true or `boundMs` passed. */
async function until(cond: () => boolean, boundMs = 10_000): Promise<boolean> {
  const end = Date.now() + boundMs;
  while (!cond()) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

function counter() {
  const counts = new Map<string, number>();
  return {
    counts,
    onLimit: (name: string) => counts.set(name, (counts.get(name) ?? 0) + 1),
  };
}

const ok = () => Promise.resolve(new Response("ok\n"));

Deno.test("HTTP listener: past httpConnections a new connection is closed at once; the others are served", async () => {
  const c = counter();
  const l = await serveOn({
    listen: `${loopbackAddress({ port: 0 })}:0`,
    handler: ok,
    limits: { httpConnections: 4, httpHeaderMs: 60_000 },
    onLimit: c.onLimit,
  });
  const held: Deno.TcpConn[] = [];
  try {
    for (let i = 0; i < 4; i++) held.push(await connect(l.url));
    assert.ok(await until(() => l.connections === 4), `connections: ${l.connections}`);
    const fifth = await connect(l.url);
    const r = await readUntilClosed(fifth);
    assert.ok(r.closed, "the connection past the bound was left open");
    assert.equal(r.text, "");
    assert.equal(c.counts.get("http_connections"), 1);
    assert.equal(l.connections, 4);
    // The four held ones still work.
    await held[0]!.write(encoder.encode("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
    const answered = await readUntilClosed(held.shift()!);
    assert.match(answered.text, /^HTTP\/1\.1 200 /);
    assert.ok(await until(() => l.connections === 3));
    held.push(await connect(l.url));
    assert.ok(await until(() => l.connections === 4), "a freed slot is taken again");
    assert.equal(c.counts.get("http_connections"), 1);
  } finally {
    for (const conn of held) conn.close();
    await l.close();
  }
});

Deno.test("HTTP listener: timers", async (t) => {
  const c = counter();
  const bodies: (number | string)[] = [];
  const l = await serveOn({
    listen: `${loopbackAddress({ port: 0 })}:0`,
    handler: async (req) => {
      if (req.method === "POST") {
        const body = await readBody(req, 65535);
        bodies.push(body instanceof Response ? body.status : body.length);
      }
      return new Response("ok\n");
    },
    limits: { httpConnections: 16, httpHeaderMs: 300, httpIdleMs: 600 },
    onLimit: c.onLimit,
  });
  try {
    await t.step(
      "a request head that does not arrive whole within httpHeaderMs: closed",
      async () => {
        const conn = await connect(l.url);
        await conn.write(encoder.encode("GET / HTTP/1.1\r\nHost: x\r\n")); // no blank line
        const r = await readUntilClosed(conn);
        assert.ok(r.closed, "a half-sent request head kept its connection");
        assert.equal(r.text, "");
        assert.equal(c.counts.get("http_header_timeout"), 1);
      },
    );

    await t.step("a connection that sends nothing: closed the same way", async () => {
      const r = await readUntilClosed(await connect(l.url));
      assert.ok(r.closed);
      assert.equal(c.counts.get("http_header_timeout"), 2);
    });

    await t.step("a keep-alive connection idle after its answer: closed, not counted", async () => {
      const conn = await connect(l.url);
      await conn.write(encoder.encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
      const r = await readUntilClosed(conn);
      assert.ok(r.closed, "an idle keep-alive connection stayed open");
      assert.match(r.text, /^HTTP\/1\.1 200 /);
      assert.equal(c.counts.get("http_header_timeout"), 2);
      assert.equal(c.counts.get("http_request_timeout"), undefined);
    });

    await t.step("a body that drips: the request is cut after httpIdleMs", async () => {
      const conn = await connect(l.url);
      await conn.write(
        encoder.encode("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789"),
      );
      const r = await readUntilClosed(conn);
      assert.ok(r.closed, "a request whose body never came stayed open");
      assert.equal(c.counts.get("http_request_timeout"), 1);
      assert.ok(await until(() => bodies.length === 1));
      assert.notEqual(bodies[0], 1000, "the body was never whole");
    });
  } finally {
    await l.close();
  }
});

Deno.test("HTTP listener: an event stream outlives the header and idle timers; close() ends it", async () => {
  const events = 12;
  let stops = 0;
  const l = await serveOn({
    listen: `${loopbackAddress({ port: 0 })}:0`,
    handler: (req) => {
      const forever = new URL(req.url).pathname === "/forever";
      let n = 0, timer: ReturnType<typeof setInterval> | undefined;
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          timer = setInterval(() => {
            controller.enqueue(encoder.encode(`data: ${n++}\n\n`));
            if (!forever && n === events) {
              clearInterval(timer);
              controller.close();
            }
          }, 100);
        },
        cancel() {
          stops++;
          clearInterval(timer);
        },
      });
      return Promise.resolve(
        new Response(body, { headers: { "content-type": "text/event-stream" } }),
      );
    },
    limits: { httpHeaderMs: 200, httpIdleMs: 200 },
  });
  try {
    const conn = await connect(l.url);
    await conn.write(encoder.encode("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
    const r = await readUntilClosed(conn);
    // 12 events 100 ms apart: the stream lived several times httpIdleMs.
    assert.equal((r.text.match(/^data: \d+$/gm) ?? []).length, events, r.text);

    /** A connection that got the first event of `/forever`. */
    const streaming = async () => {
      const conn = await connect(l.url);
      await conn.write(encoder.encode("GET /forever HTTP/1.1\r\nHost: x\r\n\r\n"));
      const buf = new Uint8Array(4096);
      let seen = "";
      while (!/data: 0/.test(seen)) {
        const n = await conn.read(buf);
        assert.ok(n !== null, "the event stream ended at once");
        seen += new TextDecoder().decode(buf.subarray(0, n));
      }
      return conn;
    };
    (await streaming()).close();
    assert.ok(await until(() => stops === 1), "a stream whose client left was not cancelled");
    assert.ok(await until(() => l.connections === 0));

    const reading = readUntilClosed(await streaming());
    await l.close();
    const ended = await reading;
    assert.ok(ended.closed, "close() left the event stream open");
    assert.equal(l.connections, 0);
    assert.ok(await until(() => stops === 2), "close() did not cancel the stream");
  } finally {
    await l.close();
  }
});

Deno.test("HTTP listener: a Unix socket is mode 0660 from its creation, under umask 000", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "pvdns-http-unix-" });
  const previous = Deno.umask(0);
  try {
    await t.step("listenUnixSocket: 0660 the moment bind returns; the umask put back", () => {
      const listener = listenUnixSocket(`${dir}/a.sock`);
      try {
        // Synchronous after the bind: nothing could have changed the mode in between.
        assert.equal(Deno.lstatSync(`${dir}/a.sock`).mode! & 0o777, 0o660);
        assert.equal(Deno.umask(0), 0, "the umask was not put back");
      } finally {
        listener.close();
      }
    });

    await t.step("serveOn unix:… serves there and the socket stays 0660", async () => {
      const l = await serveOn({ listen: `unix:${dir}/b.sock`, handler: ok });
      try {
        assert.equal((await Deno.lstat(`${dir}/b.sock`)).mode! & 0o777, 0o660);
        const conn = await Deno.connect({ transport: "unix", path: `${dir}/b.sock` });
        await conn.write(encoder.encode("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
        assert.match((await readUntilClosed(conn)).text, /^HTTP\/1\.1 200 /);
      } finally {
        await l.close();
      }
    });
  } finally {
    Deno.umask(previous);
    await Deno.remove(dir, { recursive: true });
  }
});

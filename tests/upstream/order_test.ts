import assert from "node:assert/strict";
import { parseServer } from "../../src/config/schema.ts";
import { encryptionPolicy } from "../../src/upstream/types.ts";
import { queryServers } from "../../src/upstream/order.ts";

interface S {
  readonly server: ReturnType<typeof parseServer>;
  srtt: number;
  down: boolean;
  blocked?: string;
}
const s = (text: string, srtt: number, down = false): S => ({
  server: parseServer(text),
  srtt,
  down,
});
const names = (list: readonly S[]) => list.map((x) => x.server.text);
const isDown = (x: S) => x.down;

Deno.test("server order: RTT within a class, never across", async (t) => {
  const dot = s("tls://192.0.2.1#dns.example", 40);
  const doh = s("https://192.0.2.2/dns-query#dns.example", 20);
  const plain = s("192.0.2.3", 1);
  const all = [plain, dot, doh];

  await t.step("off: all by RTT, the fast cleartext one first", () => {
    const q = queryServers(all, "off", isDown);
    assert.deepEqual(names(q.first), [plain, doh, dot].map((x) => x.server.text));
    assert.deepEqual(q.fallback, []);
  });
  await t.step("prefer: encrypted first by RTT, Do53 kept for when they are all down", () => {
    const q = queryServers(all, "prefer", isDown);
    assert.deepEqual(names(q.first), names([doh, dot]));
    assert.deepEqual(names(q.fallback), names([plain]));
    assert.equal(q.plain, false);
  });
  await t.step("prefer, every encrypted server down: Do53, marked as a fallback", () => {
    const q = queryServers(
      [plain, { ...dot, down: true }, { ...doh, down: true }],
      "prefer",
      isDown,
    );
    assert.deepEqual(names(q.first), names([plain]));
    assert.equal(q.plain, true);
  });
  await t.step("prefer, one encrypted server up: no Do53", () => {
    const q = queryServers([plain, { ...dot, down: true }, doh], "prefer", isDown);
    assert.deepEqual(names(q.first), names([doh]));
    assert.equal(q.plain, false);
  });
  await t.step("strict: never Do53, even with every encrypted server down", () => {
    const q = queryServers([plain, { ...dot, down: true }], "strict", isDown);
    assert.deepEqual(names(q.first), names([dot]), "the down one is still tried");
    assert.deepEqual(q.fallback, []);
    assert.deepEqual(names(queryServers(all, "strict", isDown).first), names([doh, dot]));
  });
  await t.step("blocked servers (strictRoutes) are never asked", () => {
    const q = queryServers([{ ...doh, blocked: "route" }, dot, plain], "prefer", isDown);
    assert.deepEqual(names(q.first), names([dot]));
  });
});

Deno.test("encryption policy: the config's, else from the servers", () => {
  const servers = (...t: string[]) => t.map((x) => parseServer(x));
  assert.equal(encryptionPolicy({ servers: servers("tls://192.0.2.1#a.example") }), "strict");
  assert.equal(
    encryptionPolicy({ servers: servers("tls://192.0.2.1#a.example", "192.0.2.2") }),
    "prefer",
  );
  assert.equal(encryptionPolicy({ servers: servers("192.0.2.2") }), "off");
  assert.equal(
    encryptionPolicy({
      servers: servers("tls://192.0.2.1#a.example", "192.0.2.2"),
      encryption: "off",
    }),
    "off",
  );
});

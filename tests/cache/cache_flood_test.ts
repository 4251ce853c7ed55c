/**
 * A flood of large answers for distinct names (issue 13's attack, scaled down) through a real
 * Unbound: its answers are longer than the 1,232 bytes pvdns advertises, so each comes over UDP
 * with TC set and then over TCP. The stub's cache (`cache.maxBytes` 512 KiB) stays within its
 * bound as `pvdns_cache_bytes` reports it, and an answer over `cache.maxEntryBytes` is served
 * but not cached: asked again, it reaches Unbound again (its query log), and it is counted.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import * as packet from "dns-packet";
import { Registry } from "prom-client";
import { validateConfig } from "../../src/config/parse.ts";
import { createStub } from "../../src/service/stub.ts";
import { loopbackAddress } from "../../testkit/loopback.ts";
import { TcpDnsClient } from "../../testkit/tcp_frames.ts";
import { startUnbound, type UnboundRecord } from "../../testkit/unbound.ts";
import { buildQuery } from "../../testkit/wire.ts";

const MAX_BYTES = 512 * 1024; // maxEntryBytes: min(16 KiB, 512 KiB / 64) = 8 KiB
const PVD = "flood.example";

/** `count` TXT records of 250 bytes at `zone`, each different (an RRset keeps them all). */
function txtSet(zone: string, count: number): UnboundRecord[] {
  return Array.from({ length: count }, (_, i) => ({
    name: zone,
    type: "TXT" as const,
    value: `${zone}-${String(i).padStart(3, "0")}-`.padEnd(250, "x"),
    ttl: 3600,
  }));
}

/** The value of `name{pvd="…"}` (or of a sample with `labels`) in an exposition. */
function sample(text: string, name: string, labels: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${name}{`) && l.includes(labels));
  return line === undefined ? undefined : Number(line.split(" ").at(-1));
}

Deno.test("cache flood of large answers through Unbound (TC, then TCP): bytes within cache.maxBytes, over-cap answers not cached", async (t) => {
  // mid.test: 13 × 250 bytes (~3.4 KB answers, cached). big.test: 40 × 250 (~10 KB, over 8 KiB).
  const unbound = await startUnbound({
    address: loopbackAddress(),
    redirectZones: ["mid.test", "big.test"],
    records: [...txtSet("mid.test", 13), ...txtSet("big.test", 40)],
  });
  const listen = loopbackAddress();
  const source = loopbackAddress({ port: 0 });
  const registry = new Registry();
  const stub = await createStub(
    validateConfig({
      listen: [`${listen}:53`],
      pvds: [{ id: PVD, sourceAddresses: [source], servers: [unbound.address], default: true }],
      cache: { maxBytes: MAX_BYTES },
    }),
    { log: () => {}, registry },
  );
  const client = await TcpDnsClient.open(listen);
  let id = 0;
  /** The rcode and records of the answer to `name` TXT, over TCP. */
  const ask = async (name: string) => {
    await client.send(buildQuery(++id & 0xffff, name, 16));
    const reply = await client.read();
    assert.ok(reply, `an answer for ${name}`);
    return { rcode: reply[3]! & 0x0f, answers: packet.decode(Buffer.from(reply)).answers };
  };
  const scrape = async () => {
    const text = await registry.metrics();
    return {
      bytes: sample(text, "pvdns_cache_bytes", `pvd="${PVD}"`),
      entries: sample(text, "pvdns_cache_entries", `pvd="${PVD}"`),
      overCap: sample(text, "pvdns_limit_reached_total", `limit="cache_entry_bytes"`) ?? 0,
    };
  };
  const logged = async (name: string) =>
    (await unbound.queryLog()).filter((q) => q.name === `${name}.` && q.from === source).length;
  try {
    await t.step(
      "400 distinct names of ~3.4 KB: the cache fills, evicts, stays in bytes",
      async () => {
        let peak = 0;
        for (let i = 0; i < 400; i++) {
          const answer = await ask(`n${i}.mid.test`);
          assert.equal(answer.rcode, 0, "NOERROR");
          assert.equal(answer.answers?.length, 13, `n${i}: the whole set, over TCP`);
          if (i % 20 === 19) {
            const { bytes } = await scrape();
            assert.ok(bytes !== undefined && bytes <= MAX_BYTES, `after ${i + 1} names: ${bytes}`);
            peak = Math.max(peak, bytes);
          }
        }
        const { entries } = await scrape();
        assert.ok(entries !== undefined && entries < 400, `${entries} entries: some were evicted`);
        assert.ok(peak > MAX_BYTES * 0.75, `the cache did fill up (${peak} bytes at most)`);
        // Each answer was truncated over UDP and fetched again over TCP: two log lines a name.
        assert.equal(await logged("n0.mid.test"), 2);
      },
    );

    await t.step("the most recent name is cached: asked again, Unbound sees nothing", async () => {
      const before = await logged("n399.mid.test");
      assert.equal((await ask("n399.mid.test")).answers?.length, 13);
      assert.equal(await logged("n399.mid.test"), before);
    });

    await t.step("an answer over cache.maxEntryBytes is served, not cached, counted", async () => {
      const { overCap } = await scrape();
      for (let round = 1; round <= 2; round++) {
        const answer = await ask("x.big.test");
        assert.equal(answer.rcode, 0, "NOERROR");
        assert.equal(answer.answers?.length, 40, "served whole");
        assert.equal(await logged("x.big.test"), 2 * round, `round ${round} reached Unbound`);
      }
      assert.equal((await scrape()).overCap, overCap + 2);
      const { bytes } = await scrape();
      assert.ok(bytes !== undefined && bytes <= MAX_BYTES);
    });
  } finally {
    client.close();
    await stub.close();
    await unbound.stop();
  }
});

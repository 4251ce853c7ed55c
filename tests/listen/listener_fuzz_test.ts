/**
 * Issue 8 part 1: the listeners under hostile input. A real `pvdns serve` process per UDP
 * listener implementation (`mmsg`, `deno`), each also serving TCP, in front of a real dnsmasq and
 * with local-answer rules, gets over 20,000 generated and mutated inputs (testkit/
 * fuzz_inputs.ts); every reply must be a well-formed DNS message that fits its query, the process
 * must stay up without logging an internal error, and valid queries must be answered after every
 * batch over UDP and TCP (testkit/fuzz_driver.ts). `bench/fuzz.ts` runs the same for a
 * million inputs.
 *
 * Replay with another seed: `PVDNS_FUZZ_SEED=N deno test -A tests/listen/listener_fuzz_test.ts`.
 *
 * @module
 */

import assert from "node:assert/strict";
import { checkReply } from "../../testkit/fuzz_check.ts";
import {
  formatStats,
  type FuzzBed,
  fuzzTcp,
  fuzzUdp,
  newStats,
  runFuzz,
} from "../../testkit/fuzz_driver.ts";
import { FuzzInputs } from "../../testkit/fuzz_inputs.ts";
import { loopbackAddress } from "../../testkit/loopback.ts";
import { readTcpFrames, tcpFrame, writeAll } from "../../testkit/tcp_frames.ts";
import { buildQuery } from "../../testkit/wire.ts";

const SEED = Number(Deno.env.get("PVDNS_FUZZ_SEED") ?? 20_808);

/** `bytes` with edits applied: [offset, value] pairs, then `extra` appended. */
function edit(bytes: Uint8Array, edits: [number, number][], extra: number[] = []): Uint8Array {
  const out = new Uint8Array([...bytes, ...extra]);
  for (const [off, v] of edits) out[off] = v;
  return out;
}

/** A server that echoes every query with QR set: well formed only when the query was. */
function startEchoLiar(): FuzzBed {
  const address = loopbackAddress();
  const udp = Deno.listenDatagram({ transport: "udp", hostname: address, port: 53 });
  const tcp = Deno.listen({ hostname: address, port: 53 });
  const echo = (m: Uint8Array) => edit(m, m.length >= 3 ? [[2, m[2]! | 0x80]] : []);
  const conns = new Set<Promise<void>>();
  const serveConn = async (conn: Deno.TcpConn) => {
    try {
      for await (const m of readTcpFrames(conn)) await writeAll(conn, tcpFrame(echo(m.slice())));
    } catch { /* the client closed first */ }
    conn.close();
  };
  const loops = [
    (async () => {
      try {
        for (;;) {
          const [m, from] = await udp.receive();
          if (m.length >= 12) await udp.send(echo(m), from);
        }
      } catch { /* closed */ }
    })(),
    (async () => {
      for await (const conn of tcp) {
        const p = serveConn(conn).finally(() => conns.delete(p));
        conns.add(p);
      }
    })(),
  ];
  return {
    label: "echo-liar",
    address,
    port: 53,
    problems: () => [],
    async stop() {
      udp.close();
      tcp.close();
      await Promise.all([...loops, ...conns]);
    },
  };
}

Deno.test("listener fuzz: the judge rejects malformed and mismatched replies", async (t) => {
  const query = buildQuery(0x1234, "www.fuzz.test", 1); // 31 bytes, question ends at 31
  const answer = [0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 1, 0x2c, 0, 4, 10, 9, 0, 1];
  const good = edit(query, [[2, 0x81], [3, 0x80], [7, 1]], answer);
  const opt = [0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0];
  // A TXT record of two 255-byte strings (RDLENGTH 512): the reply is 571 bytes.
  const text = (c: number) => [255, ...new Array<number>(255).fill(c)];
  const bigTxt = [0xc0, 0x0c, 0, 16, 0, 1, 0, 0, 0, 1, 0x02, 0x00, ...text(0x61), ...text(0x62)];

  await t.step("a well-formed reply passes, over UDP and TCP", () => {
    assert.equal(checkReply(query, good, "udp"), undefined);
    assert.equal(checkReply(query, good, "tcp"), undefined);
  });

  const bad: [string, Uint8Array, "udp" | "tcp", RegExp][] = [
    ["QR clear", edit(good, [[2, 0x01]]), "udp", /QR not set/],
    ["another ID", edit(good, [[1, 0x35]]), "udp", /ID/],
    ["another opcode", edit(good, [[2, 0x81 | 0x10]]), "udp", /opcode/],
    ["rcode 6 (YXDOMAIN)", edit(good, [[3, 0x86]]), "udp", /rcode 6/],
    ["a trailing byte", edit(good, [], [0]), "udp", /after the last record/],
    ["ANCOUNT 2 with one record", edit(good, [[7, 2]]), "udp", /past the end/],
    ["owner pointer to itself", edit(good, [[31, 0xc0], [32, 31]]), "udp", /not backward/],
    ["forward pointer", edit(good, [[32, 40]]), "udp", /not backward/],
    ["label type 0x40", edit(good, [[12, 0x43]]), "udp", /label type/],
    ["A data of 5 bytes", edit(good, [[41, 0], [42, 5]], [0]), "udp", /RDLENGTH/],
    [
      "question dropped",
      edit(query, [[2, 0x81], [3, 0x81], [5, 0]]).subarray(0, 12),
      "udp",
      /not echoed/,
    ],
    ["question changed", edit(good, [[13, 0x78]]), "udp", /echoed differently/],
    ["OPT to a query without EDNS", edit(good, [[11, 1]], opt), "udp", /OPT in the reply/],
    ["two OPT records", edit(good, [[11, 2]], [...opt, ...opt]), "udp", /two OPT/],
    ["TC over TCP", edit(good, [[2, 0x83]]), "tcp", /TC set over TCP/],
    ["over 512 bytes over UDP without EDNS", edit(good, [[7, 2]], bigTxt), "udp", /limit 512/],
  ];
  for (const [what, reply, transport, want] of bad) {
    await t.step(`rejects: ${what}`, () => {
      const problem = checkReply(query, reply, transport);
      assert.match(problem ?? "(accepted)", want);
    });
  }
});

Deno.test("listener fuzz: the harness reports a server that echoes hostile input", async () => {
  // Echoing a query with QR set is well formed only for well-formed queries: the hostile ones
  // must show up as failures, over UDP and over TCP.
  const liar = startEchoLiar();
  const stats = newStats();
  try {
    const gen = new FuzzInputs(SEED);
    await fuzzUdp(liar, gen, 300, stats, { noReplyMs: 300 });
    const udpFailures = stats.failureCount;
    await fuzzTcp(liar, gen, 150, stats);
    console.log(formatStats(stats));
    assert.ok(udpFailures > 0, "UDP replies to hostile input were judged malformed");
    assert.ok(
      stats.failureCount > udpFailures,
      "TCP replies to hostile input were judged malformed",
    );
    assert.ok(stats.failures.some((f) => /malformed reply/.test(f)));
  } finally {
    await liar.stop();
  }
});

Deno.test("listener fuzz: pvdns (mmsg and deno UDP, TCP) answers 20,000 hostile inputs well or not at all", async () => {
  const stats = await runFuzz({
    seed: SEED,
    udpInputs: 9_000,
    tcpInputs: 1_600,
    batches: 3,
    log: (line) => console.log(line),
  });
  console.log(`seed ${SEED}\n${formatStats(stats)}`);
  assert.equal(stats.failureCount, 0, stats.failures.join("\n"));
  assert.ok(stats.inputs >= 20_000, `${stats.inputs} inputs`);
  // The run is only worth something when it exercised both outcomes and the probes ran.
  assert.ok(stats.replies > stats.inputs / 2, `${stats.replies} replies`);
  assert.ok(stats.noReplies > 0, "some inputs were dropped");
  assert.equal(stats.probes, 2 * 4 * 4, "4 probes before and after each of 3 batches, twice");
});

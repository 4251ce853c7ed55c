/**
 * 0x20 (`upstream.caseRandomisation`) through {@linkcode PvdUpstreams}, against real UDP sockets
 * on loopback: a server that keeps the name's case, one that lower-cases it (the fallback), and
 * the count and warning of answers that match no query through `createStub`.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import * as packet from "dns-packet";
import { Registry } from "prom-client";
import { LeakGuard } from "../../src/policy/leak_guard.ts";
import { validateConfig } from "../../src/config/parse.ts";
import type { PvdConfig } from "../../src/config/types.ts";
import { createStub } from "../../src/service/stub.ts";
import { NO_CASE_MS, PvdUpstreams } from "../../src/upstream/pool.ts";
import { dig } from "../../testkit/dig.ts";
import { answerA } from "../../testkit/fake_servers.ts";
import { loopbackAddress } from "../../testkit/loopback.ts";

const CACHE = { maxEntries: 100, minTtl: 0, maxTtl: 86400, negativeMaxTtl: 3600, servfailTtl: 2 };
const Q = (qname: string) => ({ qname, qtype: 1, qclass: 1, do: false, cd: false });

function pvdFor(id: string, source: string, server: string): PvdConfig {
  return {
    id,
    implicit: false,
    origin: "config",
    prefixes: [],
    sourceAddresses: [source],
    dnsZones: [],
    searchDomains: [],
    default: true,
    priority: 0,
    strictRoutes: false,
    servers: [{ text: server, protocol: "udp", address: server, family: 4, port: 53 }],
  };
}

/**
 * A UDP upstream that answers A 192.0.2.1, with the question lower-cased when `lowerCase()`
 * says so, and records each question's name as it came on the wire.
 */
function caseServer(address: string, lowerCase: () => boolean) {
  const sock = Deno.listenDatagram({ hostname: address, port: 53, transport: "udp" });
  const names: string[] = [];
  const loop = (async () => {
    try {
      for (let i = 0; i < 10_000; i++) {
        const [data, from] = await sock.receive();
        names.push(packet.decode(Buffer.from(data)).questions![0]!.name);
        const answer = answerA(data);
        if (lowerCase()) {
          for (let j = 12; j < answer.length; j++) {
            if (answer[j]! >= 0x41 && answer[j]! <= 0x5a) answer[j]! += 0x20;
          }
        }
        await sock.send(answer, from);
      }
    } catch { /* closed */ }
  })();
  return {
    names,
    async close() {
      sock.close();
      await loop;
    },
  };
}

const mixed = (name: string) => name !== name.toLowerCase() && name !== name.toUpperCase();

Deno.test("0x20: the name goes out in random case to a server that keeps it", async () => {
  const serverAddress = loopbackAddress();
  const source = loopbackAddress({ port: 0 });
  const server = caseServer(serverAddress, () => false);
  const pvd = pvdFor("case.example", source, serverAddress);
  const up = new PvdUpstreams(pvd, {
    upstream: { timeoutMs: 1000, deadlineMs: 2000, caseRandomisation: true },
    cache: CACHE,
    guard: new LeakGuard([pvd]),
  });
  try {
    for (let i = 0; i < 10; i++) {
      const r = await up.query(Q(`name${i}.with-many-letters.case.test.`));
      assert.equal(r.rcode, 0);
    }
    assert.equal(server.names.length, 10, "one query each: nothing asked again");
    assert.ok(server.names.every(mixed), server.names.join(" "));
    assert.equal(new Set(server.names).size, 10);
  } finally {
    await up.close();
    await server.close();
  }
});

Deno.test("0x20: a server that loses the case is asked again without it, and then for a while", async (t) => {
  const serverAddress = loopbackAddress();
  const source = loopbackAddress({ port: 0 });
  const server = caseServer(serverAddress, () => true);
  const pvd = pvdFor("lower.example", source, serverAddress);
  let clock = 1_000_000;
  const up = new PvdUpstreams(pvd, {
    upstream: { timeoutMs: 1000, deadlineMs: 2000, caseRandomisation: true },
    cache: CACHE,
    guard: new LeakGuard([pvd]),
    now: () => clock,
  });
  try {
    await t.step("the first query still succeeds: asked again in lower case", async () => {
      const r = await up.query(Q("first.lower-case.test."));
      assert.equal(r.rcode, 0);
      assert.equal(server.names.length, 2);
      assert.ok(mixed(server.names[0]!), `${server.names[0]}`);
      assert.equal(server.names[1], "first.lower-case.test");
      assert.equal(up.health[0]!.fails, 0, "not a failure of the server");
    });
    await t.step("the next queries go without 0x20 until NO_CASE_MS has passed", async () => {
      await up.query(Q("second.lower-case.test."));
      assert.deepEqual(server.names.slice(2), ["second.lower-case.test"]);
      clock += NO_CASE_MS + 1;
      await up.query(Q("third.lower-case.test."));
      assert.equal(server.names.length, 5, "tried with 0x20 again, and fell back again");
      assert.ok(mixed(server.names[3]!), `${server.names[3]}`);
    });
  } finally {
    await up.close();
    await server.close();
  }
});

Deno.test("0x20 off (the default): the name goes out as the client's, in lower case", async () => {
  const serverAddress = loopbackAddress();
  const source = loopbackAddress({ port: 0 });
  const server = caseServer(serverAddress, () => false);
  const pvd = pvdFor("plain.example", source, serverAddress);
  const up = new PvdUpstreams(pvd, {
    upstream: { timeoutMs: 1000, deadlineMs: 2000 },
    cache: CACHE,
    guard: new LeakGuard([pvd]),
  });
  try {
    await up.query(Q("plain.case.test."));
    assert.deepEqual(server.names, ["plain.case.test"]);
  } finally {
    await up.close();
    await server.close();
  }
});

Deno.test("createStub counts answers that match no query and warns once per burst, without the name", async () => {
  const serverAddress = loopbackAddress();
  const [source, listen] = [loopbackAddress({ port: 0 }), loopbackAddress()];
  // Ten answers with the wrong ID on the query's port, then the right one.
  const sock = Deno.listenDatagram({ hostname: serverAddress, port: 53, transport: "udp" });
  const loop = (async () => {
    try {
      for (let i = 0; i < 100; i++) {
        const [data, from] = await sock.receive();
        for (let k = 1; k <= 10; k++) {
          const forged = answerA(data, "203.0.113.66");
          forged[1] = (forged[1]! + k) & 0xff;
          await sock.send(forged, from);
        }
        await new Promise((r) => setTimeout(r, 20));
        await sock.send(answerA(data), from);
      }
    } catch { /* closed */ }
  })();
  const registry = new Registry();
  const lines: string[] = [];
  const stub = await createStub(
    validateConfig({
      listen: [`${listen}:53`],
      pvds: [{ id: "sprayed.example", sourceAddresses: [source], servers: [serverAddress] }],
      upstream: { timeoutMs: 1000, deadlineMs: 2000 },
    }),
    { log: (l) => lines.push(l), registry },
  );
  try {
    const answer = await dig({ server: listen, name: "secret-name.sprayed.test" });
    assert.equal(answer.status, "NOERROR");
    assert.deepEqual(answer.answers.map((a) => a.data), ["192.0.2.1"]);
    const text = await registry.metrics();
    assert.match(text, /pvdns_upstream_unexpected_answers_total\{pvd="sprayed.example"\} 10\n/);
    const warnings = lines.filter((l) => l.includes("forging"));
    assert.equal(warnings.length, 1, lines.join("\n"));
    assert.match(warnings[0]!, /PvD sprayed\.example: 1 upstream port\(s\) to 127\./);
    assert.doesNotMatch(warnings[0]!, /secret-name/);
  } finally {
    await stub.close();
    sock.close();
    await loop;
  }
});

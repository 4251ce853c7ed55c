/**
 * The contract every upstream {@linkcode Transport} keeps, run against a real Unbound (Do53,
 * DoT and DoH on one loopback address, certificate from a test CA made with openssl) and
 * against black holes (sockets that read and never answer). Each wire's test file calls
 * {@linkcode runTransportContract} once.
 *
 * What it proves, one step each:
 * - answers match their queries: concurrent queries (two of them with the same ID) each get the
 *   answer to their own question, under their own ID;
 * - the server sees the PvD's source address (Unbound's query log);
 * - the signal is honoured: a timeout gives reason `timeout`, an abort reason `closed`;
 * - close releases every socket (`ss` on the source address) and fails what was in flight;
 * - the leak guard refuses a foreign server or source before anything is sent;
 * - (stream wires) one connection carries many queries.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import * as packet from "dns-packet";
import { LeakBlockedError, LeakGuard } from "../../src/policy/leak_guard.ts";
import { parseServer } from "../../src/config/schema.ts";
import type { ServerConfig, ServerProtocol } from "../../src/config/types.ts";
import { answersQuery, buildUpstreamQuery } from "../../src/dns/query.ts";
import type { CreateTransportOptions } from "../../src/transports/create.ts";
import { type Transport, TransportError } from "../../src/transports/transport.ts";
import { tcpBlackHole, udpBlackHole } from "../../testkit/fake_servers.ts";
import { loopbackAddress } from "../../testkit/loopback.ts";
import { socketsOf, waitForSockets } from "../../testkit/sockets.ts";
import { makeTestPki } from "../../testkit/test_pki.ts";
import { startUnbound } from "../../testkit/unbound.ts";

/** What a wire's test file passes to {@linkcode runTransportContract}. */
export interface TransportContract {
  /** Test name prefix, e.g. `"TlsTransport"`. */
  readonly name: string;
  readonly protocol: ServerProtocol;
  /** Makes the transport under test. */
  readonly create: (options: CreateTransportOptions) => Transport;
}

const AUTH_NAME = "dns.test.example";
const NAMES = 16;

/** The server string of `protocol` at `address` (default ports, Unbound's DoH path). */
export function serverText(protocol: ServerProtocol, address: string, authName = AUTH_NAME) {
  switch (protocol) {
    case "udp":
      return address;
    case "tcp":
      return `tcp://${address}`;
    case "tls":
      return `tls://${address}#${authName}`;
    case "https":
      return `https://${address}/dns-query#${authName}`;
  }
}

function query(id: number, qname: string, qtype = 1): Uint8Array {
  return buildUpstreamQuery({ id, qname, qtype, qclass: 1, do: false, cd: false });
}

function aRecords(answer: Uint8Array): string[] {
  const p = packet.decode(Buffer.from(answer));
  return (p.answers ?? []).flatMap((a) => a.type === "A" ? [a.data] : []);
}

async function rejectsWith(promise: Promise<unknown>, reason: TransportError["reason"]) {
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof TransportError, `a TransportError, not ${e}`);
    assert.equal(e.reason, reason, e.message);
    return true;
  });
}

/** Registers the contract test of one wire. */
export function runTransportContract(contract: TransportContract): void {
  const { name, protocol, create } = contract;
  const stream = protocol !== "udp";
  Deno.test(`${name} keeps the transport contract against Unbound`, async (t) => {
    const pki = await makeTestPki(AUTH_NAME);
    const upstream = loopbackAddress();
    const holeAddress = loopbackAddress();
    const hole2Address = loopbackAddress();
    const source = loopbackAddress({ port: 0 });
    const otherSource = loopbackAddress({ port: 0 });
    const unbound = await startUnbound({
      address: upstream,
      tls: pki.good,
      records: Array.from({ length: NAMES }, (_, i) => ({
        name: `c${i}.contract.test`,
        type: "A" as const,
        value: `192.0.2.${i + 1}`,
      })),
    });
    const server: ServerConfig = parseServer(serverText(protocol, upstream));
    const holeServer: ServerConfig = parseServer(serverText(protocol, holeAddress));
    const hole = protocol === "udp"
      ? udpBlackHole(holeAddress, holeServer.port)
      : tcpBlackHole(holeAddress, holeServer.port);
    const reached = () => "seen" in hole ? hole.seen : hole.connections;
    // A second black hole that only the leak-guard step talks to.
    const hole2Server: ServerConfig = parseServer(serverText(protocol, hole2Address));
    const hole2 = protocol === "udp"
      ? udpBlackHole(hole2Address, hole2Server.port)
      : tcpBlackHole(hole2Address, hole2Server.port);
    const reached2 = () => "seen" in hole2 ? hole2.seen : hole2.connections;
    const guard = new LeakGuard(
      [{ id: "contract", sourceAddresses: [source], servers: [server, holeServer, hole2Server] }],
      { onBlocked: () => {} },
    );
    const make = (s: ServerConfig, options: { source?: string; guard?: LeakGuard } = {}) =>
      create({
        pvd: "contract",
        server: s,
        source: options.source ?? source,
        guard: options.guard ?? guard,
        ca: [pki.caPem],
      });
    const transport = make(server);
    const toHole = make(holeServer);
    try {
      await t.step(
        "answers match their queries, by ID and question, when many are in flight",
        async () => {
          const ids = new Set<number>();
          while (ids.size < NAMES) ids.add(crypto.getRandomValues(new Uint16Array(1))[0]!);
          const queries = [...ids].map((id, i) => query(id, `c${i}.contract.test.`));
          const answers = await Promise.all(
            queries.map((q) => transport.exchange(q, { signal: AbortSignal.timeout(5000) })),
          );
          answers.forEach((a, i) => {
            assert.ok(answersQuery(queries[i]!, a), `answer ${i} is for query ${i}`);
            assert.deepEqual(aRecords(a), [`192.0.2.${i + 1}`]);
          });
          // Two callers that picked the same ID still get their own answers.
          const [a, b] = await Promise.all([
            transport.exchange(query(4242, "c1.contract.test."), {
              signal: AbortSignal.timeout(5000),
            }),
            transport.exchange(query(4242, "c2.contract.test."), {
              signal: AbortSignal.timeout(5000),
            }),
          ]);
          assert.deepEqual([aRecords(a), aRecords(b)], [["192.0.2.2"], ["192.0.2.3"]]);
          assert.equal((a[0]! << 8) | a[1]!, 4242);
          assert.equal((b[0]! << 8) | b[1]!, 4242);
        },
      );

      await t.step("the server sees the PvD's source address", async () => {
        const log = (await unbound.queryLog()).filter((q) => q.name.endsWith("contract.test."));
        assert.ok(log.length >= NAMES, `Unbound logged ${log.length} queries`);
        assert.deepEqual([...new Set(log.map((q) => q.from))], [source]);
      });

      if (stream) {
        await t.step("one connection carries many queries", async () => {
          for (let i = 0; i < 8; i++) {
            await transport.exchange(query(i, `c${i}.contract.test.`), {
              signal: AbortSignal.timeout(5000),
            });
          }
          const held = (await socketsOf(source)).filter((s) =>
            s.proto === "tcp" && s.state === "ESTAB" && s.peer.endsWith(`:${server.port}`)
          );
          assert.equal(held.length, 1, JSON.stringify(held));
        });
      }

      await t.step("a timeout gives reason timeout, an abort reason closed", async () => {
        await rejectsWith(
          toHole.exchange(query(1, "c0.contract.test."), { signal: AbortSignal.timeout(200) }),
          "timeout",
        );
        assert.ok(reached() >= 1, "the black hole was reached");
        const ac = new AbortController();
        const pending = toHole.exchange(query(2, "c0.contract.test."), { signal: ac.signal });
        ac.abort();
        await rejectsWith(pending, "closed");
        const aborted = new AbortController();
        aborted.abort();
        await rejectsWith(
          transport.exchange(query(3, "c0.contract.test."), { signal: aborted.signal }),
          "closed",
        );
      });

      await t.step(
        "the leak guard refuses another PvD's server or source before sending",
        async () => {
          const narrow = new LeakGuard(
            [{ id: "contract", sourceAddresses: [source], servers: [server] }],
            { onBlocked: () => {} },
          );
          const refused = make(hole2Server, { guard: narrow });
          const wrongSource = make(server, { source: otherSource });
          try {
            await assert.rejects(
              refused.exchange(query(5, "c0.contract.test."), { signal: AbortSignal.timeout(500) }),
              LeakBlockedError,
            );
            await assert.rejects(
              wrongSource.exchange(query(6, "c0.contract.test."), {
                signal: AbortSignal.timeout(500),
              }),
              LeakBlockedError,
            );
            assert.equal(narrow.blocked.get("contract"), 1);
            assert.equal(guard.blocked.get("contract"), 1);
            // The same send from a fresh transport, allowed, reaches the black hole: exactly one
            // arrival (a datagram or a connection), so the refused one never got there.
            const allowed = make(hole2Server);
            await rejectsWith(
              allowed.exchange(query(7, "c0.contract.test."), { signal: AbortSignal.timeout(200) }),
              "timeout",
            );
            await allowed.close();
            assert.equal(reached2(), 1);
            assert.equal(
              (await unbound.queryLog()).filter((q) => q.from === otherSource).length,
              0,
              "nothing came from the foreign source",
            );
            assert.deepEqual(await socketsOf(otherSource), []);
          } finally {
            await refused.close();
            await wrongSource.close();
          }
        },
      );

      await t.step("close releases every socket and fails what is in flight", async () => {
        await transport.exchange(query(8, "c3.contract.test."), {
          signal: AbortSignal.timeout(5000),
        });
        const inFlight = toHole.exchange(query(9, "c0.contract.test."), {
          signal: AbortSignal.timeout(5000),
        });
        inFlight.catch(() => {});
        const open = await waitForSockets(source, (held) => held.length >= (stream ? 2 : 1));
        assert.ok(open.length >= 1, "sockets are held before close");
        await transport.close();
        await toHole.close();
        await rejectsWith(inFlight, "closed");
        const left = await waitForSockets(source, (held) => held.length === 0);
        assert.deepEqual(left, [], "no socket is left on the source address");
        await rejectsWith(
          transport.exchange(query(10, "c0.contract.test."), { signal: AbortSignal.timeout(500) }),
          "closed",
        );
      });
    } finally {
      await transport.close();
      await toHole.close();
      await hole.close();
      await hole2.close();
      await unbound.stop();
      await pki.remove();
    }
  });
}

/**
 * RFC 7766 behaviour of the stream wires (Do53 over TCP, DoT), which share one connection pool:
 * pipelined answers in any order, idle close, reopening after the server closes, and the bound
 * on connections. Run against the fake stream server of `testkit/fake_servers.ts`, in
 * clear or with TLS, because Unbound cannot be told to hold answers or drop connections.
 *
 * @module
 */

import assert from "node:assert/strict";
import { LeakGuard } from "../../src/policy/leak_guard.ts";
import { parseServer } from "../../src/config/schema.ts";
import { answersQuery, buildUpstreamQuery } from "../../src/dns/query.ts";
import type { StreamLimits } from "../../src/transports/_stream.ts";
import { TcpTransport } from "../../src/transports/tcp.ts";
import { TlsTransport } from "../../src/transports/tls.ts";
import type { Transport } from "../../src/transports/transport.ts";
import { startStreamServer, type StreamServer } from "../../testkit/fake_servers.ts";
import { loopbackAddress } from "../../testkit/loopback.ts";
import { makeTestPki, type TestPki } from "../../testkit/test_pki.ts";

const q = (id: number, i: number) =>
  buildUpstreamQuery({
    id,
    qname: `s${i}.stream.test.`,
    qtype: 1,
    qclass: 1,
    do: false,
    cd: false,
  });

/** Waits for `promise`, failing the test when it takes longer than `ms` (a hang, not a speed). */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const bound = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: did not happen within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, bound]);
  } finally {
    clearTimeout(timer);
  }
}

/** Resolves once `pred()` holds (polled every 20 ms; callers bound it with `within`). */
async function until(pred: () => boolean): Promise<void> {
  while (!pred()) await new Promise((r) => setTimeout(r, 20));
}

/** Registers the stream cases for `tcp` or `tls`. */
export function runStreamCases(protocol: "tcp" | "tls"): void {
  const name = protocol === "tcp" ? "TcpTransport" : "TlsTransport";

  async function setup(
    serverOptions: { holdFor?: number; closeAfter?: number },
    limits: StreamLimits = {},
  ): Promise<{ server: StreamServer; t: Transport; source: string; done(): Promise<void> }> {
    const pki: TestPki | undefined = protocol === "tls" ? await makeTestPki() : undefined;
    const address = loopbackAddress({ port: 0 });
    const source = loopbackAddress({ port: 0 });
    const port = protocol === "tls" ? 853 : 53;
    const server = startStreamServer({
      address,
      port,
      ...(pki ? { tls: pki.good } : {}),
      ...serverOptions,
    });
    const config = parseServer(
      protocol === "tls" ? `tls://${address}#${pki!.authName}` : `tcp://${address}`,
    );
    const guard = new LeakGuard([{ id: "p", sourceAddresses: [source], servers: [config] }]);
    const common = { pvd: "p", server: config, source, guard, ...limits };
    const t = protocol === "tls"
      ? new TlsTransport({ ...common, ca: [pki!.caPem] })
      : new TcpTransport(common);
    return {
      server,
      t,
      source,
      async done() {
        await t.close();
        await server.close();
        await pki?.remove();
      },
    };
  }

  Deno.test(`${name} pipelines queries on one connection and takes answers in any order`, async () => {
    const { server, t, source, done } = await setup({ holdFor: 4 });
    try {
      const queries = [0, 1, 2, 3].map((i) => q(100 + i, i));
      const answers = await Promise.all(
        queries.map((x) => t.exchange(x, { signal: AbortSignal.timeout(5000) })),
      );
      answers.forEach((a, i) => assert.ok(answersQuery(queries[i]!, a), `answer ${i}`));
      assert.equal(server.accepted, 1, "one connection carried all four");
      assert.deepEqual(server.queries.map((x) => x.conn), [0, 0, 0, 0]);
      assert.deepEqual(server.peers, [source]);
    } finally {
      await done();
    }
  });

  Deno.test(`${name} closes an idle connection and opens another for the next query`, async () => {
    const { server, t, done } = await setup({}, { idleMs: 100 });
    try {
      await t.exchange(q(1, 1), { signal: AbortSignal.timeout(5000) });
      await within(server.closed(0), 5000, "idle close");
      await t.exchange(q(2, 2), { signal: AbortSignal.timeout(5000) });
      assert.equal(server.accepted, 2);
    } finally {
      await done();
    }
  });

  Deno.test(`${name} reopens a connection the server closed, and resends what was lost`, async () => {
    const { server, t, done } = await setup({ closeAfter: 1 });
    const connections = () => (t as TcpTransport | TlsTransport).connections;
    try {
      await t.exchange(q(1, 1), { signal: AbortSignal.timeout(5000) });
      await within(until(() => connections() === 0), 5000, "the client sees the server's close");
      await t.exchange(q(2, 2), { signal: AbortSignal.timeout(5000) });
      assert.equal(server.accepted, 2, "a new connection for the next query");
      await within(until(() => connections() === 0), 5000, "the client sees the server's close");
      // Three in flight on one connection; the server answers one per connection and hangs up:
      // the last one needs both resends (MAX_RESENDS).
      const queries = [3, 4, 5].map((i) => q(i, i));
      const answers = await Promise.all(
        queries.map((x) => t.exchange(x, { signal: AbortSignal.timeout(5000) })),
      );
      answers.forEach((a, i) => assert.ok(answersQuery(queries[i]!, a), `answer ${i}`));
      assert.equal(server.accepted, 5);
    } finally {
      await done();
    }
  });

  Deno.test(`${name} never opens more than maxConnections, however many queries wait`, async () => {
    // Each connection answers only once it holds 5 queries: 10 queries need both connections.
    const { server, t, done } = await setup({ holdFor: 5 }, { maxConnections: 2, pipeline: 1 });
    try {
      const queries = Array.from({ length: 10 }, (_, i) => q(i, i));
      const answers = await Promise.all(
        queries.map((x) => t.exchange(x, { signal: AbortSignal.timeout(5000) })),
      );
      answers.forEach((a, i) => assert.ok(answersQuery(queries[i]!, a), `answer ${i}`));
      assert.equal(server.accepted, 2);
    } finally {
      await done();
    }
  });
}

/**
 * Certificate checks of DoT and DoH against real Unbound servers presenting a good certificate,
 * one for another name, an expired one and one from an unknown CA. A bad certificate fails the
 * server with reason `tls`, and nothing is asked in clear instead: each Unbound also listens on
 * port 53 of the same address, and its query log stays empty.
 */

import assert from "node:assert/strict";
import { LeakGuard } from "../../src/policy/leak_guard.ts";
import type { PvdConfig } from "../../src/config/types.ts";
import { parseServer } from "../../src/config/schema.ts";
import { PvdUpstreams, UpstreamFailure } from "../../src/upstream/pool.ts";
import { buildUpstreamQuery } from "../../src/dns/query.ts";
import { createTransport } from "../../src/transports/create.ts";
import { TransportError } from "../../src/transports/transport.ts";
import { loopbackAddress } from "../../testkit/loopback.ts";
import { makeTestPki, type TestCert } from "../../testkit/test_pki.ts";
import { startUnbound, type Unbound } from "../../testkit/unbound.ts";
import { serverText } from "./_contract.ts";

const CACHE = { maxEntries: 100, minTtl: 0, maxTtl: 86400, negativeMaxTtl: 3600, servfailTtl: 2 };
const Q = { qname: "a.cert.test.", qtype: 1, qclass: 1, do: false, cd: false };

function pvdOf(server: string, source: string, caFile?: string): PvdConfig {
  return {
    id: "secure.example",
    implicit: false,
    origin: "config",
    prefixes: [],
    sourceAddresses: [source],
    servers: [parseServer(server)],
    dnsZones: [],
    searchDomains: [],
    default: true,
    priority: 0,
    strictRoutes: false,
    ...(caFile ? { caFile } : {}),
  };
}

Deno.test("DoT and DoH fail a server with a bad certificate (reason tls) and never fall back to plaintext", async (t) => {
  const pki = await makeTestPki("dns.test.example");
  const servers: Record<string, Unbound> = {};
  const source = loopbackAddress({ port: 0 });
  const start = async (cert: TestCert) =>
    await startUnbound({
      address: loopbackAddress(),
      tls: cert,
      records: [{ name: "a.cert.test", type: "A", value: "192.0.2.80" }],
    });
  try {
    servers.good = await start(pki.good);
    servers.wrongName = await start(pki.wrongName);
    servers.expired = await start(pki.expired);
    servers.unknownCa = await start(pki.unknownCa);
    for (const protocol of ["tls", "https"] as const) {
      const ask = async (which: string, options: { pvdCa?: boolean; topCa?: boolean } = {}) => {
        const pvd = pvdOf(
          serverText(protocol, servers[which]!.address),
          source,
          options.pvdCa === false ? undefined : pki.caFile,
        );
        const up = new PvdUpstreams(pvd, {
          upstream: { timeoutMs: 2000, deadlineMs: 3000 },
          cache: CACHE,
          guard: new LeakGuard([pvd], { onBlocked: () => {} }),
          ...(options.topCa ? { caFile: pki.caFile } : {}),
        });
        try {
          return await up.query(Q);
        } finally {
          await up.close();
        }
      };
      const failsWithTls = async (which: string, options: { pvdCa?: boolean } = {}) => {
        await assert.rejects(ask(which, options), (e) => {
          assert.ok(e instanceof UpstreamFailure, String(e));
          assert.deepEqual(e.attempts.map((a) => a.reason), ["tls"], e.message);
          return true;
        });
        assert.deepEqual(
          await servers[which]!.queryLog(),
          [],
          "the server was asked nothing, on any port",
        );
      };

      await t.step(
        `${protocol}: a certificate from the PvD's caFile, for the auth name, is accepted`,
        async () => {
          const r = await ask("good");
          assert.equal(r.rcode, 0);
        },
      );
      await t.step(`${protocol}: the config's top-level caFile is trusted too`, async () => {
        const r = await ask("good", { pvdCa: false, topCa: true });
        assert.equal(r.rcode, 0);
      });
      await t.step(
        `${protocol}: a certificate for another name fails`,
        () => failsWithTls("wrongName"),
      );
      await t.step(`${protocol}: an expired certificate fails`, () => failsWithTls("expired"));
      await t.step(
        `${protocol}: a certificate from an unknown CA fails`,
        () => failsWithTls("unknownCa"),
      );
      await t.step(
        `${protocol}: without the caFile the test CA is not trusted (system roots only)`,
        async () => {
          const before = (await servers.good!.queryLog()).length;
          await assert.rejects(ask("good", { pvdCa: false }), UpstreamFailure);
          assert.equal((await servers.good!.queryLog()).length, before, "nothing was asked");
        },
      );
      await t.step(`${protocol}: the transport itself reports reason tls`, async () => {
        const server = parseServer(serverText(protocol, servers.expired!.address));
        const guard = new LeakGuard([{ id: "p", sourceAddresses: [source], servers: [server] }]);
        const transport = createTransport({ pvd: "p", server, source, guard, ca: [pki.caPem] });
        const query = buildUpstreamQuery({ id: 7, ...Q });
        try {
          await assert.rejects(
            transport.exchange(query, { signal: AbortSignal.timeout(3000) }),
            (e) => e instanceof TransportError && e.reason === "tls",
          );
        } finally {
          await transport.close();
        }
      });
    }
  } finally {
    for (const s of Object.values(servers)) await s.stop();
    await pki.remove();
  }
});

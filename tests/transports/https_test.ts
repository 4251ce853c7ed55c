import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import * as packet from "dns-packet";
import { LeakGuard } from "../../src/policy/leak_guard.ts";
import { parseServer } from "../../src/config/schema.ts";
import type { PvdConfig } from "../../src/config/types.ts";
import { PvdUpstreams } from "../../src/upstream/pool.ts";
import { buildUpstreamQuery } from "../../src/dns/query.ts";
import { HttpsTransport } from "../../src/transports/https.ts";
import { TransportError } from "../../src/transports/transport.ts";
import { startDnsmasq } from "../../testkit/dnsmasq.ts";
import { loopbackAddress } from "../../testkit/loopback.ts";
import { makeTestPki } from "../../testkit/test_pki.ts";
import { startUnbound } from "../../testkit/unbound.ts";
import { runTransportContract } from "./_contract.ts";

runTransportContract({
  name: "HttpsTransport",
  protocol: "https",
  create: (o) => new HttpsTransport(o),
});

const CACHE = { maxEntries: 100, minTtl: 0, maxTtl: 86400, negativeMaxTtl: 3600, servfailTtl: 2 };

function pvd(id: string, source: string, servers: string[]): PvdConfig {
  return {
    id,
    implicit: false,
    origin: "config",
    prefixes: [],
    sourceAddresses: [source],
    // A host-named DoH server takes the family of the PvD's Do53 servers (config/schema.ts).
    servers: servers.map((s) => ({ family: 4 as const, ...parseServer(s) })),
    dnsZones: [],
    searchDomains: [],
    default: true,
    priority: 0,
    strictRoutes: false,
  };
}

Deno.test("HttpsTransport: an HTTP status other than 2xx is reason http", async () => {
  const pki = await makeTestPki();
  const unbound = await startUnbound({ address: loopbackAddress(), tls: pki.good });
  const source = loopbackAddress({ port: 0 });
  const server = parseServer(`https://${unbound.address}/not-dns#${pki.authName}`);
  const guard = new LeakGuard([{ id: "p", sourceAddresses: [source], servers: [server] }]);
  const t = new HttpsTransport({ pvd: "p", server, source, guard, ca: [pki.caPem] });
  try {
    const query = buildUpstreamQuery({
      id: 9,
      qname: "x.test.",
      qtype: 1,
      qclass: 1,
      do: false,
      cd: false,
    });
    await assert.rejects(
      t.exchange(query, { signal: AbortSignal.timeout(3000) }),
      (e) => e instanceof TransportError && e.reason === "http" && /404/.test(e.message),
    );
  } finally {
    await t.close();
    await unbound.stop();
    await pki.remove();
  }
});

Deno.test("https://HOST/PATH: HOST is looked up only through the same PvD's Do53 server, then asked over DoH from the PvD's source", async () => {
  const pki = await makeTestPki("dns.test.example");
  const unbound = await startUnbound({
    address: loopbackAddress(),
    tls: pki.good,
    records: [{ name: "www.doh.test", type: "A", value: "192.0.2.90" }],
  });
  const ownDo53 = await startDnsmasq({
    address: loopbackAddress(),
    zones: ["test.example"],
    records: [{ name: "dns.test.example", type: "A", value: unbound.address }],
  });
  const otherDo53 = await startDnsmasq({
    address: loopbackAddress(),
    zones: ["test.example"],
    records: [{ name: "dns.test.example", type: "A", value: unbound.address }],
  });
  const source = loopbackAddress({ port: 0 });
  const otherSource = loopbackAddress({ port: 0 });
  const home = {
    ...pvd("home.example", source, ["https://dns.test.example/dns-query", ownDo53.address]),
    caFile: pki.caFile,
  };
  const other = pvd("other.example", otherSource, [otherDo53.address]);
  const guard = new LeakGuard([home, other], { onBlocked: () => {} });
  const up = new PvdUpstreams(home, {
    upstream: { timeoutMs: 2000, deadlineMs: 4000 },
    cache: CACHE,
    guard,
  });
  try {
    assert.equal(up.order[0]!.protocol, "https", "the DoH server is asked first");
    const ask = async () => {
      const r = await up.query({
        qname: "www.doh.test.",
        qtype: 1,
        qclass: 1,
        do: false,
        cd: false,
      });
      assert.equal(r.rcode, 0);
      const answers = packet.decode(Buffer.from(r.wire)).answers ?? [];
      assert.deepEqual(answers.map((a) => a.type === "A" ? a.data : a.type), ["192.0.2.90"]);
    };
    await ask();
    // With the Do53 server out of use, the DoH server is the only one left, and HOST's address
    // must come from what was learned.
    up.setBlocked(ownDo53.address, "test: Do53 out of use");
    await ask();
    const lookups = await ownDo53.queryLog();
    assert.deepEqual(
      lookups.map((q) => `${q.type} ${q.name} ${q.from}`),
      [`A dns.test.example ${source}`],
      "one lookup of HOST, through the PvD's own Do53 server, from its source (then cached)",
    );
    const asked = (await unbound.queryLog()).map((q) => `${q.name} ${q.from}`);
    assert.deepEqual(asked, [`www.doh.test. ${source}`, `www.doh.test. ${source}`]);
    assert.deepEqual(await otherDo53.queryLog(), [], "the other PvD's server saw nothing");
    assert.equal(guard.blocked.size, 0, "the leak guard refused nothing");
  } finally {
    await up.close();
    await ownDo53.stop();
    await otherDo53.stop();
    await unbound.stop();
    await pki.remove();
  }
});

Deno.test("HttpsTransport: an answer body over 65,535 bytes is refused while it streams", async () => {
  const pki = await makeTestPki();
  const address = loopbackAddress();
  let sent = 0;
  const server = Deno.serve({
    hostname: address,
    port: 443,
    cert: pki.good.cert,
    key: pki.good.key,
    onListen: () => {},
  }, () => {
    // 64 MiB in 64 KiB chunks, made as they are read: the client must stop reading early.
    const chunk = new Uint8Array(65536);
    const body = new ReadableStream<Uint8Array>({
      pull(c) {
        if (sent >= 1024) return c.close();
        sent++;
        c.enqueue(chunk);
      },
    });
    return new Response(body, { headers: { "content-type": "application/dns-message" } });
  });
  const source = loopbackAddress({ port: 0 });
  const s = parseServer(`https://${address}/dns-query#${pki.authName}`);
  const guard = new LeakGuard([{ id: "p", sourceAddresses: [source], servers: [s] }]);
  const t = new HttpsTransport({ pvd: "p", server: s, source, guard, ca: [pki.caPem] });
  try {
    const query = buildUpstreamQuery({
      id: 3,
      qname: "x.test.",
      qtype: 1,
      qclass: 1,
      do: false,
      cd: false,
    });
    await assert.rejects(
      t.exchange(query, { signal: AbortSignal.timeout(5000) }),
      (e) =>
        e instanceof TransportError && e.reason === "bad-answer" &&
        /longer than 65535/.test(e.message),
    );
    assert.ok(sent < 64, `the server made only ${sent} of 1,024 chunks`);
  } finally {
    await t.close();
    await server.shutdown();
    await pki.remove();
  }
});

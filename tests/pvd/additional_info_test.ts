/**
 * PvD Additional Information: validation of the JSON object (RFC 8801 §4.3, STANDARDS §1.6
 * negative tests), the real undici fetcher against a local HTTPS server with a test CA (source
 * address, Accept, no User-Agent, certificate name, redirects, 4xx, bad JSON), and the PvD ID
 * lookup through a PvD's own Do53 server (dnsmasq).
 */

import assert from "node:assert/strict";
import {
  classifyError,
  createInfoFetcher,
  type FetchOutcome,
  validateAdditionalInfo,
} from "../../src/pvd/additional_info.ts";
import { lookupInPvd, PvdLookupError } from "../../src/pvd/pvd_id_lookup.ts";
import { cidr } from "../../src/policy/prefixes.ts";
import { parseServer } from "../../src/config/parse.ts";
import { startDnsmasq } from "../../testkit/dnsmasq.ts";
import { loopbackAddress } from "../../testkit/loopback.ts";
import { makeTestCa } from "../../testkit/test_ca.ts";

const NOW = Date.parse("2020-05-01T00:00:00Z");
const PIO = [cidr("2001:db8:cafe::/64")];

Deno.test("additional info: validation of the JSON object", async (t) => {
  const base = {
    identifier: "cafe.example.com.",
    expires: "2020-05-23T06:00:00Z",
    prefixes: ["2001:db8:cafe::/48"],
  };
  const check = (doc: unknown, id = "cafe.example.com", prefixes = PIO) =>
    validateAdditionalInfo(doc, { pvdId: id, prefixes, now: NOW });
  await t.step("the RFC 8801 §5.4 object is valid", () => {
    const v = check(base);
    assert.ok(v.ok);
    assert.deepEqual(v.info, {
      identifier: "cafe.example.com",
      expires: "2020-05-23T06:00:00Z",
      prefixes: [cidr("2001:db8:cafe::/48")],
    });
  });
  await t.step("identifier: case and trailing dot do not matter; another name does", () => {
    assert.ok(check({ ...base, identifier: "CAFE.Example.Com" }, "cafe.example.com.").ok);
    const v = check({ ...base, identifier: "other.example.com." });
    assert.ok(!v.ok && v.reason.includes("is not the PvD ID"));
  });
  await t.step("each mandatory key missing", () => {
    for (const key of ["identifier", "expires", "prefixes"]) {
      const doc: Record<string, unknown> = { ...base };
      delete doc[key];
      const v = check(doc);
      assert.ok(!v.ok && v.reason.includes(key), `${key}: ${JSON.stringify(v)}`);
    }
  });
  await t.step("expires in the past, or not an RFC 3339 date", () => {
    const past = check({ ...base, expires: "2020-04-30T23:59:59Z" });
    assert.ok(!past.ok && past.reason.includes("past"));
    const bad = check({ ...base, expires: "May 23, 2020" });
    assert.ok(!bad.ok && bad.reason.includes("RFC 3339"));
    assert.ok(check({ ...base, expires: "2020-05-23T08:00:00.5+02:00" }).ok);
  });
  await t.step("a PIO not covered by the prefixes", () => {
    const v = check({ ...base, prefixes: ["2001:db8:1::/48", "2001:db8:4::/48"] });
    assert.ok(!v.ok && v.reason.includes("do not cover"));
    const two = check(base, "cafe.example.com", [...PIO, cidr("2001:db8:f00d::/64")]);
    assert.ok(!two.ok, "every PIO must be covered");
    const narrower = check({ ...base, prefixes: ["2001:db8:cafe::/80"] });
    assert.ok(!narrower.ok, "a longer prefix does not cover a /64");
  });
  await t.step("prefixes must be IPv6 prefixes", () => {
    const v = check({ ...base, prefixes: ["2001:db8:cafe::/48", "192.0.2.0/24"] });
    assert.ok(!v.ok);
    assert.ok(!check({ ...base, prefixes: "2001:db8:cafe::/48" }).ok);
  });
  await t.step(
    "unknown keys and vendor dictionaries are ignored; dnsZones and noInternet kept",
    () => {
      const v = check({
        ...base,
        "vendor-foo": { "private-key": "private-value" },
        "urn:example:x": [1],
        splitDnsClaims: [],
        dnsZones: ["Corp.Example.", "example.com", 7, ".", "bad name"],
        noInternet: true,
      });
      assert.ok(v.ok);
      assert.deepEqual(v.info.dnsZones, ["corp.example.", "example.com."]);
      assert.equal(v.info.noInternet, true);
      const odd = check({ ...base, noInternet: "yes", dnsZones: "corp.example" });
      assert.ok(odd.ok);
      assert.equal(odd.info.noInternet, undefined);
      assert.equal(odd.info.dnsZones, undefined);
    },
  );
  await t.step("the pre-RFC captive-portal schema (no identifier, no expires) is ignored", () => {
    const v = check({ name: "cafe", prefixes: ["2001:db8:cafe::/48"], noInternet: false });
    assert.ok(!v.ok);
    assert.ok(!check([base]).ok);
    assert.ok(!check(null).ok);
  });
});

Deno.test("additional info: error classification", () => {
  assert.equal(classifyError({ code: "ERR_TLS_CERT_ALTNAME_INVALID", message: "x" }), "tls");
  assert.equal(classifyError({ code: "UNABLE_TO_VERIFY_LEAF_SIGNATURE", message: "x" }), "tls");
  assert.equal(classifyError({ code: "ECONNREFUSED", message: "connect" }), "network");
  assert.equal(classifyError({ code: "UND_ERR_CONNECT_TIMEOUT", message: "t" }), "network");
  assert.equal(classifyError({ code: "UND_ERR_SOCKET", message: "other side closed" }), "http");
});

const NAMES = [
  "good.example.com",
  "redirect.example.com",
  "missing.example.com",
  "notjson.example.com",
  "downgrade.example.com",
  "loop.example.com",
]; // deno-fmt-ignore

Deno.test("additional info: the undici fetcher against a local HTTPS server with a test CA", async (t) => {
  const ca = await makeTestCa(NAMES);
  const server = loopbackAddress({ port: 0 });
  const source = loopbackAddress({ port: 0 });
  const seen: { host: string | null; path: string; from: string; accept: string | null; ua: string | null }[] = [];
  const ac = new AbortController();
  let port = 0;
  const listening = Promise.withResolvers<void>();
  const httpd = Deno.serve({
    hostname: server,
    port: 0,
    cert: ca.certPem,
    key: ca.keyPem,
    signal: ac.signal,
    onListen: (addr) => {
      port = addr.port;
      listening.resolve();
    },
  }, (req, info) => {
    const url = new URL(req.url);
    const host = req.headers.get("host")?.replace(/:\d+$/, "") ?? "";
    seen.push({
      host,
      path: url.pathname,
      from: (info.remoteAddr as Deno.NetAddr).hostname,
      accept: req.headers.get("accept"),
      ua: req.headers.get("user-agent"),
    });
    const json = (id: string) =>
      new Response(
        JSON.stringify({ identifier: `${id}.`, expires: "2099-01-01T00:00:00Z", prefixes: [] }),
        { headers: { "content-type": "application/pvd+json" } },
      );
    switch (host) {
      case "good.example.com":
        return json(host);
      case "redirect.example.com":
        if (url.pathname === "/.well-known/pvd") {
          return new Response(null, {
            status: 302,
            headers: { location: `https://good.example.com:${port}/moved` },
          });
        }
        return json(host);
      case "missing.example.com":
        return new Response("no", { status: 404 });
      case "notjson.example.com":
        return new Response("{ not json", { headers: { "content-type": "application/pvd+json" } });
      case "downgrade.example.com":
        return new Response(null, { status: 301, headers: { location: "http://good.example.com/" } });
      case "loop.example.com":
        return new Response(null, { status: 302, headers: { location: "/.well-known/pvd" } });
      default:
        return json(host);
    }
  });
  await listening.promise;
  const asked: string[] = [];
  const fetcher = createInfoFetcher({
    caFile: ca.caFile,
    port,
    lookup: (name) => {
      asked.push(name);
      return Promise.resolve([server]);
    },
  });
  const get = (pvdId: string, f = fetcher): Promise<FetchOutcome> =>
    f({
      pvdId,
      sourceAddresses: [source],
      allSourceAddresses: [source],
      servers: [],
      signal: AbortSignal.timeout(8000),
    });
  try {
    await t.step("200: the document, fetched from the PvD's source address", async () => {
      const r = await get("good.example.com");
      assert.ok(r.ok, JSON.stringify(r));
      assert.equal((r.document as { identifier: string }).identifier, "good.example.com.");
      assert.equal(r.source, source);
      const last = seen.at(-1)!;
      assert.equal(last.from, source);
      assert.equal(last.path, "/.well-known/pvd");
      assert.equal(last.host, "good.example.com");
      assert.equal(last.accept, "application/pvd+json");
      assert.equal(last.ua, null, "no User-Agent");
      assert.deepEqual(asked, ["good.example.com"], "the name is looked up in the PvD only");
    });
    await t.step("3xx is followed, the new host looked up in the PvD too", async () => {
      asked.length = 0;
      const r = await get("redirect.example.com");
      assert.ok(r.ok, JSON.stringify(r));
      assert.equal(r.url, `https://good.example.com:${port}/moved`);
      assert.deepEqual(asked, ["redirect.example.com", "good.example.com"]);
    });
    await t.step("404 is an HTTP failure", async () => {
      const r = await get("missing.example.com");
      assert.ok(!r.ok && r.kind === "http", JSON.stringify(r));
    });
    await t.step("a body that is not JSON is a JSON failure", async () => {
      const r = await get("notjson.example.com");
      assert.ok(!r.ok && r.kind === "json", JSON.stringify(r));
    });
    await t.step("a redirect to http: and a redirect loop are HTTP failures", async () => {
      const d = await get("downgrade.example.com");
      assert.ok(!d.ok && d.kind === "http", JSON.stringify(d));
      const l = await get("loop.example.com");
      assert.ok(!l.ok && l.kind === "http" && l.message.includes("too many"), JSON.stringify(l));
    });
    await t.step("a certificate that does not name the PvD ID is a TLS failure", async () => {
      const before = seen.length;
      const r = await get("other.example.com");
      assert.ok(!r.ok && r.kind === "tls", JSON.stringify(r));
      assert.equal(seen.length, before, "no request was sent");
    });
    await t.step("without the caFile the test CA is not trusted: TLS failure", async () => {
      const plain = createInfoFetcher({ port, lookup: () => Promise.resolve([server]) });
      const r = await get("good.example.com", plain);
      assert.ok(!r.ok && r.kind === "tls", JSON.stringify(r));
    });
    await t.step("no source address: nothing is attempted", async () => {
      const r = await fetcher({
        pvdId: "good.example.com",
        sourceAddresses: [],
        allSourceAddresses: [],
        servers: [],
        signal: AbortSignal.timeout(1000),
      });
      assert.ok(!r.ok && r.kind === "no-source");
    });
    await t.step("a name without address, or a dead lookup, is a DNS failure", async () => {
      const none = createInfoFetcher({ port, lookup: () => Promise.resolve([]) });
      const r = await get("good.example.com", none);
      assert.ok(!r.ok && r.kind === "dns", JSON.stringify(r));
      const dead = createInfoFetcher({ port, lookup: () => Promise.reject(new Error("timeout")) });
      const r2 = await get("good.example.com", dead);
      assert.ok(!r2.ok && r2.kind === "dns", JSON.stringify(r2));
    });
    await t.step("nobody listening: a network failure (retried later, not a give-up)", async () => {
      const closed = createInfoFetcher({ port: 9, lookup: () => Promise.resolve([server]) });
      const r = await get("good.example.com", closed);
      assert.ok(!r.ok && r.kind === "network", JSON.stringify(r));
    });
  } finally {
    ac.abort();
    await httpd.finished;
    await ca.remove();
  }
});

Deno.test("additional info: the PvD ID is looked up through the PvD's own server, from its source", async () => {
  const address = loopbackAddress();
  const source = loopbackAddress({ port: 0 });
  const dns = await startDnsmasq({
    address,
    zones: ["example.com"],
    records: [{ name: "pvd.example.com", type: "AAAA", value: "2001:db8:cafe::443" }],
  });
  try {
    const pvd = {
      id: "pvd.example.com",
      sourceAddresses: [source],
      servers: [parseServer(address)],
    };
    const signal = AbortSignal.timeout(5000);
    assert.deepEqual(await lookupInPvd("PvD.Example.com.", pvd, { signal }), [
      "2001:db8:cafe::443",
    ]);
    assert.deepEqual(await lookupInPvd("none.example.com", pvd, { signal }), [], "NXDOMAIN");
    const q = await dns.waitForQuery((q) => q.name.toLowerCase() === "pvd.example.com");
    assert.equal(q.type, "AAAA");
    assert.equal(q.from.replace(/#\d+$/, ""), source);
    // No source address of the server's family: nothing is sent, the lookup fails.
    await assert.rejects(
      lookupInPvd("pvd.example.com", { ...pvd, sourceAddresses: ["2001:db8::1"] }, { signal }),
      PvdLookupError,
    );
  } finally {
    await dns.stop();
  }
});

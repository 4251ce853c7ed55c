import assert from "node:assert/strict";
import { Registry } from "prom-client";
import { validateConfig } from "../../src/config/parse.ts";
import { createStub } from "../../src/service/stub.ts";
import { dig } from "../../testkit/dig.ts";
import { startDnsmasq } from "../../testkit/dnsmasq.ts";
import { loopbackAddress } from "../../testkit/loopback.ts";

/** The value of one sample line `name{labels} value` in an exposition, or undefined. */
function sample(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split("\n")) {
    if (!line.startsWith(name + "{") && line.split(" ")[0] !== name) continue;
    const ok = Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`));
    if (ok) return Number(line.split(" ").at(-1));
  }
  return undefined;
}

Deno.test("metrics: requests, responses by PvD and source, cache hits and misses, pvd info, no query names", async () => {
  const srv = loopbackAddress();
  const [src, listen] = [loopbackAddress({ port: 0 }), loopbackAddress()];
  const dead = loopbackAddress(); // nothing listens there
  const up = await startDnsmasq({
    address: srv,
    zones: ["m.test"],
    records: [{ name: "a.m.test", type: "A", value: "192.0.2.1" }],
  });
  const registry = new Registry();
  const stub = await createStub(
    validateConfig({
      listen: [`${listen}:53`],
      pvds: [
        { id: "home.example", sourceAddresses: [src], servers: [srv], default: true },
        { id: "dead.example", sourceAddresses: [src], servers: [dead], dnsZones: ["dead.test"] },
      ],
      rules: [{ match: { suffix: "blocked.m.test" }, action: "nxdomain" }],
      upstream: { timeoutMs: 200, deadlineMs: 300 },
    }),
    { log: () => {}, registry, version: "9.9.9" },
  );
  try {
    for (let i = 0; i < 3; i++) await dig({ server: listen, name: "a.m.test" });
    await dig({ server: listen, name: "x.blocked.m.test", type: "AAAA" });
    await dig({ server: listen, name: "a.m.test", tcp: true });
    assert.equal((await dig({ server: listen, name: "x.dead.test" })).status, "SERVFAIL");
    const text = await registry.metrics();
    assert.equal(
      sample(text, "pvdns_upstream_request_duration_seconds_count", {
        pvd: "home.example",
        server: srv,
        transport: "udp",
      }),
      1,
    );
    const deadErrors = text.split("\n").filter((l) =>
      l.startsWith("pvdns_upstream_errors_total{") && l.includes('pvd="dead.example"')
    );
    assert.equal(deadErrors.length, 1, deadErrors.join("\n"));
    assert.match(deadErrors[0]!, /reason="(timeout|refused)"/);
    assert.equal(sample(text, "pvdns_dns_requests_total", { proto: "udp", type: "A" }), 4);
    assert.equal(sample(text, "pvdns_dns_requests_total", { proto: "udp", type: "AAAA" }), 1);
    assert.equal(sample(text, "pvdns_dns_requests_total", { proto: "tcp", type: "A" }), 1);
    assert.equal(
      sample(text, "pvdns_dns_responses_total", {
        pvd: "home.example",
        rcode: "NOERROR",
        source: "upstream",
      }),
      1,
    );
    assert.equal(
      sample(text, "pvdns_dns_responses_total", {
        pvd: "home.example",
        rcode: "NOERROR",
        source: "cache",
      }),
      3,
    );
    assert.equal(
      sample(text, "pvdns_dns_responses_total", {
        pvd: "none",
        rcode: "NXDOMAIN",
        source: "policy",
      }),
      1,
    );
    assert.equal(sample(text, "pvdns_cache_hits_total", { pvd: "home.example" }), 3);
    assert.equal(sample(text, "pvdns_cache_misses_total", { pvd: "home.example" }), 1);
    assert.equal(sample(text, "pvdns_cache_entries", { pvd: "home.example" }), 1);
    assert.equal(
      sample(text, "pvdns_pvd_info", { pvd: "home.example", origin: "config", implicit: "false" }),
      1,
    );
    assert.equal(sample(text, "pvdns_build_info", { version: "9.9.9" }), 1);
    assert.equal(sample(text, "pvdns_dns_request_duration_seconds_count", { source: "cache" }), 3);
    assert.equal(
      sample(text, "pvdns_dns_request_duration_seconds_bucket", { source: "upstream", le: "+Inf" }),
      2,
      "the miss on home and the SERVFAIL of the dead PvD",
    );
    assert.ok(sample(text, "pvdns_process_cpu_seconds_total", {})! >= 0, "process metrics");
    assert.ok(!text.includes("a.m.test"), "query names never become labels");
    assert.equal(stub.flush("home.example"), 1);
    assert.equal(
      sample(await registry.metrics(), "pvdns_cache_entries", { pvd: "home.example" }),
      0,
    );
  } finally {
    await stub.close();
    await up.stop();
  }
});

Deno.test("metrics: promtool accepts the exposition", async () => {
  const promtool = await new Deno.Command("sh", {
    args: ["-c", "command -v promtool"],
    stdout: "piped",
  }).output();
  assert.ok(promtool.success, "promtool is installed (Debian package prometheus)");
  const registry = new Registry();
  const stub = await createStub(
    validateConfig({
      listen: [`${loopbackAddress()}:53`],
      pvds: [{ id: "home.example", sourceAddresses: ["127.0.0.1"], servers: ["127.0.0.1"] }],
    }),
    { log: () => {}, registry },
  );
  try {
    const child = new Deno.Command("promtool", {
      args: ["check", "metrics"],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(await registry.metrics()));
    await w.close();
    const out = await child.output();
    const msg = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, msg);
  } finally {
    await stub.close();
  }
});

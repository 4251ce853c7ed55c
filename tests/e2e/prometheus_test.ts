/**
 * A real Prometheus (Debian's `/usr/bin/prometheus`) scrapes the `pvdns serve` daemon's metrics
 * listener on loopback; the test reads `pvdns_dns_requests_total` back through Prometheus's HTTP
 * query API, and `promtool check metrics` passes on what the listener serves.
 *
 * @module
 */

import assert from "node:assert/strict";
import { dig } from "../../testkit/dig.ts";
import { exec, sleep } from "../../testkit/exec.ts";
import { loopbackAddress } from "../../testkit/loopback.ts";
import { startPvdns } from "../../testkit/pvdns_process.ts";
import { startTwoPvds } from "../../testkit/two_pvds.ts";

/** A free TCP port on `address`. */
function freePort(address: string): number {
  const l = Deno.listen({ hostname: address, port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

Deno.test("Prometheus scrapes pvdns's /metrics and answers a query for pvdns_dns_requests_total", async () => {
  const f = await startTwoPvds();
  const metricsAddress = loopbackAddress({ port: 0 });
  const metricsPort = freePort(metricsAddress);
  const pvdns = await startPvdns({
    config: f.config({ metrics: { listen: `${metricsAddress}:${metricsPort}` } }),
  });
  const dir = await Deno.makeTempDir({ prefix: "pvdns-prometheus-" });
  let prometheus: Deno.ChildProcess | undefined;
  try {
    for (let i = 0; i < 3; i++) {
      assert.equal((await dig({ server: f.listen, name: "www.home.test" })).status, "NOERROR");
    }
    assert.equal(
      (await dig({ server: f.listen, name: "www.corp.test", type: "AAAA" })).status,
      "NOERROR",
    );

    const promAddress = loopbackAddress({ port: 0 });
    const promPort = freePort(promAddress);
    await Deno.writeTextFile(
      `${dir}/prometheus.yml`,
      [
        "global:",
        "  scrape_interval: 1s",
        "  evaluation_interval: 1s",
        "scrape_configs:",
        "  - job_name: pvdns",
        "    scrape_interval: 1s",
        "    static_configs:",
        `      - targets: ["${metricsAddress}:${metricsPort}"]`,
        "",
      ].join("\n"),
    );
    prometheus = new Deno.Command("/usr/bin/prometheus", {
      args: [
        `--config.file=${dir}/prometheus.yml`,
        `--storage.tsdb.path=${dir}/data`,
        `--web.listen-address=${promAddress}:${promPort}`,
        "--log.level=warn",
      ],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const stderr = prometheus.stderr.pipeThrough(new TextDecoderStream()).getReader();
    const log: string[] = [];
    const pump = (async () => {
      for (;;) {
        const { value, done } = await stderr.read();
        if (done) break;
        log.push(value);
      }
    })();

    // Poll the query API (bounded: 60 s) until the scraped counter shows the 3 A queries.
    const url = `http://${promAddress}:${promPort}/api/v1/query?query=${
      encodeURIComponent('pvdns_dns_requests_total{job="pvdns",proto="udp",type="A"}')
    }`;
    let value: number | undefined;
    let last = "";
    for (let i = 0; i < 120 && value === undefined; i++) {
      await sleep(500);
      try {
        const res = await fetch(url);
        last = await res.text();
        const body = JSON.parse(last);
        const sample = body?.data?.result?.[0]?.value?.[1];
        if (body.status === "success" && sample !== undefined) value = Number(sample);
      } catch { /* not up yet */ }
    }
    assert.equal(value, 3, `no sample from Prometheus: ${last}\n${log.join("")}`);

    // The target is healthy in Prometheus's eyes, and promtool accepts the exposition.
    const targets = await (await fetch(`http://${promAddress}:${promPort}/api/v1/targets`)).json();
    assert.equal(targets.data.activeTargets[0].health, "up");
    const lint = await exec([
      "bash",
      "-c",
      `curl -sS --max-time 5 http://${metricsAddress}:${metricsPort}/metrics | promtool check metrics`,
    ]);
    assert.equal(lint.code, 0, `promtool check metrics:\n${lint.stdout}${lint.stderr}`);
    // Under the start task's permissions (no /proc/self), memory is still reported, not 0.
    const text = await (await fetch(`http://${metricsAddress}:${metricsPort}/metrics`)).text();
    const rss = Number(text.match(/^pvdns_process_resident_memory_bytes (\S+)$/m)?.[1]);
    assert.ok(rss > 10_000_000, `resident memory reported: ${rss}`);
    assert.doesNotMatch(text, /^pvdns_process_open_fds 0$/m, "no made-up zero");

    prometheus.kill("SIGTERM");
    await prometheus.status;
    await pump;
    prometheus = undefined;
  } finally {
    if (prometheus) {
      prometheus.kill("SIGKILL");
      await prometheus.status;
      await prometheus.stderr.cancel().catch(() => {});
    }
    await pvdns.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    await f.stop();
  }
});

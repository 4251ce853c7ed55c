/**
 * Crash-only restart (issue 8 part 5: "comes back serving within a second"): how long from
 * starting `pvdns serve` to its first answer, over several SIGKILL-and-start-again cycles on the
 * same addresses. Each cycle leaves a stale control socket behind, as a crash does.
 *
 * pvdns runs with the start task's permissions plus what its config needs (as the e2e tests do,
 * testkit/pvdns_process.ts), forwarding to a dnsmasq on loopback; the first answer is a
 * cache miss answered by that upstream. Queries are sent every 5 ms from the moment the process
 * is spawned, so the figure includes Deno's start-up and module loading (warm module cache: the
 * first cycle is a warm-up and not counted). Under systemd add `RestartSec` (packaging/pvdns.service).
 *
 * Run (root, loopback only): `deno run -A bench/restart.ts [--runs 10]`
 *
 * @module
 */

import { parseArgs } from "node:util";
import { startDnsmasq } from "../testkit/dnsmasq.ts";
import { loopbackAddress } from "../testkit/loopback.ts";
import {
  configPermissions,
  pvdnsArgv,
  REPO_ROOT,
  servePermissions,
} from "../testkit/pvdns_process.ts";
import { buildQuery } from "../testkit/wire.ts";

/** Longest wait for one first answer before the bench gives up. */
const FIRST_ANSWER_LIMIT_MS = 15_000;
/** How often a query is sent while waiting. */
const POLL_MS = 5;

const { values } = parseArgs({ args: Deno.args, options: { runs: { type: "string" } } });
const runs = Number(values.runs ?? "10");
if (!Number.isInteger(runs) || runs < 1 || runs > 100) {
  console.error(`--runs must be a whole number from 1 to 100: current value is "${values.runs}"`);
  Deno.exit(2);
}

/** Spawns pvdns, asks until it answers; resolves with the child and ms from spawn to answer. */
async function startAndTime(argv: string[], listen: string) {
  const client = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  const answered = new Set<number>();
  const reader = (async () => {
    try {
      for (;;) {
        const [data] = await client.receive();
        if (data.length >= 12 && (data[2]! & 0x80)) answered.add((data[0]! << 8) | data[1]!);
      }
    } catch { /* closed */ }
  })();
  const t0 = performance.now();
  const child = new Deno.Command(argv[0]!, {
    args: argv.slice(1),
    cwd: REPO_ROOT,
    env: { DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1" },
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    for (let id = 1; performance.now() - t0 < FIRST_ANSWER_LIMIT_MS; id++) {
      await client.send(buildQuery(id, "www.restart.test"), {
        hostname: listen,
        port: 53,
        transport: "udp",
      });
      await new Promise((r) => setTimeout(r, POLL_MS));
      if (answered.size > 0) return { child, ms: performance.now() - t0 };
    }
    child.kill("SIGKILL");
    await child.status;
    throw new Error(`no answer within ${FIRST_ANSWER_LIMIT_MS} ms`);
  } finally {
    client.close();
    await reader;
  }
}

const [up, src, listen] = [loopbackAddress(), loopbackAddress({ port: 0 }), loopbackAddress()];
const dns = await startDnsmasq({
  address: up,
  zones: ["restart.test"],
  records: [{ name: "www.restart.test", type: "A", value: "198.51.100.77" }],
});
const dir = await Deno.makeTempDir({ prefix: "pvdns-restart-" });
try {
  const configPath = `${dir}/pvdns.jsonc`;
  const configText = JSON.stringify({
    listen: [`${listen}:53`],
    control: { listen: `unix:${dir}/pvdns.sock` },
    pvds: [{ id: "home.example.net", sourceAddresses: [src], servers: [up] }],
  });
  await Deno.writeTextFile(configPath, configText);
  const argv = pvdnsArgv(
    ["serve", "--config", configPath],
    servePermissions(configPermissions(configText, configPath)),
  );
  const times: number[] = [];
  for (let i = 0; i <= runs; i++) {
    const { child, ms } = await startAndTime(argv, listen);
    if (i > 0) times.push(ms); // cycle 0 warms the module cache
    child.kill("SIGKILL"); // the crash; the next cycle starts on the same addresses
    await child.status;
  }
  const sorted = [...times].sort((a, b) => a - b);
  const p50 = sorted[Math.ceil(sorted.length / 2) - 1]!;
  console.log(
    `restart to first answer over ${runs} SIGKILL+start cycles: p50 ${p50.toFixed(0)} ms, ` +
      `max ${sorted.at(-1)!.toFixed(0)} ms, min ${sorted[0]!.toFixed(0)} ms ` +
      `(all: ${times.map((t) => t.toFixed(0)).join(", ")}); Deno ${Deno.version.deno}`,
  );
} finally {
  await dns.stop();
  await Deno.remove(dir, { recursive: true });
}

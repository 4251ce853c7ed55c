/**
 * The long listener fuzz run (issue 8 part 1): the harness of
 * `tests/listen/listener_fuzz_test.ts` (testkit/fuzz_driver.ts) for a million inputs by
 * default, split between the two UDP listener implementations (`--udp-listener mmsg` and `deno`),
 * 85% over UDP and 15% as TCP messages, in batches of about 20,000 with the liveness checks and
 * the UDP and TCP probes after each. Prints the counters and the wall time; exits 1 when anything
 * failed. Not part of `deno task test`.
 *
 * Run (as root: it binds port 53 on loopback addresses):
 * `deno run -A bench/fuzz.ts [--inputs N] [--seed S]`
 *
 * @module
 */

import { parseArgs } from "node:util";
import { formatStats, runFuzz } from "../testkit/fuzz_driver.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { inputs: { type: "string", default: "1000000" }, seed: { type: "string" } },
});
const inputs = Number(values.inputs);
const seed = values.seed === undefined ? Date.now() % 2 ** 31 : Number(values.seed);
if (!Number.isInteger(inputs) || inputs < 100) {
  console.error(`bench/fuzz.ts: --inputs must be an integer of at least 100: "${values.inputs}"`);
  Deno.exit(2);
}
if (!Number.isInteger(seed)) {
  console.error(`bench/fuzz.ts: --seed must be an integer: "${values.seed}"`);
  Deno.exit(2);
}

const perListener = inputs / 2;
const started = performance.now();
console.log(`fuzzing pvdns with ${inputs} inputs, seed ${seed}`);
const stats = await runFuzz({
  seed,
  udpInputs: Math.ceil(perListener * 0.85),
  tcpInputs: Math.ceil(perListener * 0.15),
  batches: Math.max(1, Math.round(perListener / 20_000)),
  log: (line) => console.log(line),
});
const seconds = (performance.now() - started) / 1000;
const crashes = stats.failures.filter((f) => /pvdns exited/.test(f)).length;
console.log(`\n${formatStats(stats)}`);
console.log(
  `crashes ${crashes}, wall time ${seconds.toFixed(1)} s ` +
    `(${Math.round(stats.inputs / seconds)} inputs/s), seed ${seed}`,
);
console.log(`command: deno run -A bench/fuzz.ts --inputs ${inputs} --seed ${seed}`);
if (stats.failureCount > 0) Deno.exit(1);

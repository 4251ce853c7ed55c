/**
 * Runs `startRaDiscovery` on one interface and prints, one JSON object per line, every
 * `publish` (`{"publish": [...]}`) and every log line (`{"log": "..."}`). Started by the
 * end-to-end test inside the "host" namespace:
 *
 * ```sh
 * ip netns exec HOST deno run -A --unstable-net ra_discovery_runner.ts --iface IFACE [--ca-file F]
 * ```
 *
 * SIGTERM closes the discovery and exits 0.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { startRaDiscovery } from "../src/pvd/ra_discovery.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { iface: { type: "string" }, "ca-file": { type: "string" } },
});
if (!values.iface) {
  console.error("usage: ra_discovery_runner.ts --iface IFACE [--ca-file FILE]");
  Deno.exit(2);
}
const print = (o: unknown) => console.log(JSON.stringify(o));
const discovery = await startRaDiscovery({
  interfaces: [values.iface],
  caFile: values["ca-file"],
  publish: (pvds) => print({ publish: pvds }),
  log: (line) => print({ log: line }),
});
Deno.addSignalListener("SIGTERM", async () => {
  await discovery.close();
  Deno.exit(0);
});

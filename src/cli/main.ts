/**
 * The `pvdns` command line.
 *
 * ```
 * pvdns serve [--config FILE]     run the stub (embedded default from the host without --config)
 * pvdns check --config FILE       validate a config file and print the result
 * pvdns pvds | query | flush | reload | stats   ask the running daemon (control API)
 * pvdns --version
 * ```
 *
 * Exit status: 0 on success, 1 on a runtime failure, 2 on a usage or configuration error, 3 when
 * the daemon cannot be reached.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { DRAIN_MS, serve, VERSION } from "../daemon/serve.ts";
import { check, doctor, route } from "./local_commands.ts";
import {
  flushCommand,
  pvdsCommand,
  queryCommand,
  reloadCommand,
  statsCommand,
} from "./remote_commands.ts";
import { USAGE } from "./usage.ts";

export { VERSION };

/** Runs the command line; resolves with the exit status. */
export async function main(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        config: { type: "string", short: "c" },
        from: { type: "string" },
        listener: { type: "string" },
        pvd: { type: "string" },
        json: { type: "boolean" },
        daemon: { type: "boolean" },
        control: { type: "string" },
        token: { type: "string" },
        version: { type: "boolean" },
        help: { type: "boolean", short: "h" },
        "udp-listener": { type: "string" },
        "drain-ms": { type: "string" },
      },
    });
  } catch (e) {
    console.error(`pvdns: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.version) {
    console.log(`pvdns ${VERSION}`);
    return 0;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  switch (positionals[0] ?? "serve") {
    case "serve": {
      const udp = values["udp-listener"] ?? "auto";
      if (udp !== "auto" && udp !== "mmsg" && udp !== "deno") {
        console.error(
          `pvdns: --udp-listener must be auto, mmsg or deno: current value is "${udp}"`,
        );
        return 2;
      }
      const drain = values["drain-ms"] ?? String(DRAIN_MS);
      if (!/^\d{1,9}$/.test(drain)) {
        console.error(
          `pvdns: --drain-ms must be a whole number of milliseconds: current value is "${drain}"`,
        );
        return 2;
      }
      return await serve({ configPath: values.config, udpListener: udp, drainMs: Number(drain) });
    }
    case "check":
      return await check(values.config);
    case "route":
      return await route(positionals.slice(1), values);
    case "doctor":
      return await doctor(values.config);
    case "pvds":
      return await pvdsCommand(values, { json: values.json });
    case "query": {
      const [name, type] = positionals.slice(1);
      if (!name) {
        console.error(`pvdns: query needs a NAME\n${USAGE}`);
        return 2;
      }
      return await queryCommand(values, name, type ?? "A", { pvd: values.pvd, json: values.json });
    }
    case "flush":
      return await flushCommand(values, values.pvd);
    case "reload":
      return await reloadCommand(values);
    case "stats":
      return await statsCommand(values);
    default:
      console.error(`pvdns: unknown command "${positionals[0]}"\n${USAGE}`);
      return 2;
  }
}

/**
 * The commands that read a config themselves instead of asking the daemon: `route` (without
 * `--daemon`), `doctor` and `check`. The ones that ask the running daemon are in
 * `remote_commands.ts`.
 *
 * @module
 */
import { loadConfigFile } from "../config/parse.ts";
import type { Config, PvdConfig } from "../config/types.ts";
import { buildHostDefault } from "../host/default_config.ts";
import { explainRoute } from "../policy/explain.ts";
import { checkRoutes } from "../policy/route_check.ts";
import { encryptionMode, encryptionPolicy } from "../upstream/pool.ts";
import { refuseConfig } from "../daemon/serve.ts";
import { routeCommand } from "./remote_commands.ts";
import { USAGE } from "./usage.ts";

/** Loads `--config FILE` or the embedded default; prints errors and returns null on failure. */
async function loadOrReport(configPath: string | undefined): Promise<Config | null> {
  try {
    return configPath ? await loadConfigFile(configPath) : await buildHostDefault();
  } catch (e) {
    refuseConfig(configPath, e);
    return null;
  }
}

/** `pvdns route NAME [TYPE]`: which PvD answers, and why (`--daemon`: the daemon's PvDs). */
export async function route(
  args: string[],
  values: {
    config?: string;
    from?: string;
    listener?: string;
    pvd?: string;
    daemon?: boolean;
    control?: string;
    token?: string;
  },
): Promise<number> {
  const [name, type] = args;
  if (!name) {
    console.error(`pvdns: route needs a NAME\n${USAGE}`);
    return 2;
  }
  const input = { name, type, from: values.from, listener: values.listener, pvd: values.pvd };
  if (values.daemon) {
    // The daemon's PvDs; the rules and listeners of --config only when it is given.
    const base = values.config ? await loadOrReport(values.config) : undefined;
    if (base === null) return 2;
    return await routeCommand(values, input, base);
  }
  const config = await loadOrReport(values.config);
  if (!config) return 2;
  try {
    for (const l of explainRoute(config, input).lines) console.log(l);
    return 0;
  } catch (e) {
    console.error(`pvdns: ${(e as Error).message}`);
    return 2;
  }
}

/** `pvdns doctor`: is each PvD's server reached through the PvD's own interface? */
export async function doctor(configPath: string | undefined): Promise<number> {
  const config = await loadOrReport(configPath);
  if (!config) return 2;
  let bad = 0;
  for (const pvd of config.pvds) {
    console.log(
      `PvD ${pvd.id}${pvd.interface ? ` (interface ${pvd.interface})` : ""}${
        pvd.strictRoutes ? ", strictRoutes: fails closed on a wrong route" : ""
      }`,
    );
    console.log(`  ${encryptionLine(pvd)}`);
    for (const r of await checkRoutes(pvd)) {
      console.log(`  ${r.ok ? "ok  " : "FAIL"} ${r.detail}`);
      if (!r.ok) bad++;
    }
  }
  console.log(bad ? `${bad} server(s) not reached through their PvD's interface` : "all routes ok");
  return bad ? 1 : 0;

  /** The PvD's encryption policy (README "Servers"): what its servers allow in clear. */
  function encryptionLine(pvd: PvdConfig): string {
    const policy = encryptionPolicy(pvd);
    const clear = pvd.servers.filter((s) => s.protocol === "udp" || s.protocol === "tcp").length;
    if (encryptionMode(pvd) === "none") return "encrypted: no, every server is Do53 in clear";
    if (policy === "strict") return "encrypted: strict (tls/https only), never falls back to Do53";
    if (policy === "prefer") {
      return `encrypted: prefer, ${clear} Do53 server(s) asked only while every encrypted one is down`;
    }
    return `encrypted: off, ${clear} of ${pvd.servers.length} server(s) are Do53 in clear, by RTT`;
  }
}

/** `pvdns check --config FILE`: the normalised config as JSON, or why it is refused. */
export async function check(configPath: string | undefined): Promise<number> {
  if (!configPath) {
    console.error("pvdns: check needs --config FILE");
    return 2;
  }
  try {
    console.log(JSON.stringify(await loadConfigFile(configPath), null, 2));
    return 0;
  } catch (e) {
    return refuseConfig(configPath, e);
  }
}

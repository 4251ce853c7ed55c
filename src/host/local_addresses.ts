/**
 * Checks of a validated config against the host it is about to run on: every address pvdns
 * would listen on is one of the host's own. The parser (`config/parse.ts`) stays a pure function of
 * the text; this runs where the daemon loads a file (start and reload), so that a listen address
 * that is not local is refused as a config error naming the field, instead of failing later
 * with the kernel's "Cannot assign requested address".
 *
 * @module
 */
import ipaddr from "ipaddr.js";
import { ConfigError, loadConfigFile, type ParseConfigOptions } from "../config/parse.ts";
import type { Config } from "../config/types.ts";
import { isLoopback, parseListenAddress, show } from "../config/values.ts";

/** The host's own addresses (normalised), from `Deno.networkInterfaces()`. */
export function hostAddresses(): Set<string> {
  const out = new Set<string>();
  for (const i of Deno.networkInterfaces()) out.add(normal(i.address.replace(/%.*$/, "")));
  return out;
}

function normal(address: string): string {
  try {
    return ipaddr.process(address).toNormalizedString();
  } catch {
    return address;
  }
}

/**
 * One `PATH: MESSAGE` line per listen address of `config` that is not an address of this host
 * (the wildcards `0.0.0.0` and `::` and every loopback address count as local).
 *
 * @param config A validated config.
 * @param local The host's addresses, as {@linkcode hostAddresses} gives them.
 */
export function nonLocalListenErrors(config: Config, local: ReadonlySet<string>): string[] {
  const errors: string[] = [];
  const check = (path: string, text: string, address: string) => {
    if (address === "0.0.0.0" || address === "::" || isLoopback(address)) return;
    if (local.has(normal(address))) return;
    errors.push(`${path}: ${show(text)} is not an address of this host (no interface has it)`);
  };
  config.listen.forEach((l, i) => check(`listen[${i}]`, l.text, l.address));
  for (
    const [path, text] of [["control.listen", config.control?.listen], [
      "metrics.listen",
      config.metrics?.listen,
    ]] as const
  ) {
    if (text === undefined || text.startsWith("unix:")) continue;
    check(path, text, parseListenAddress(text).address);
  }
  return errors;
}

/**
 * {@linkcode loadConfigFile}, then {@linkcode nonLocalListenErrors} against this host: what the
 * daemon uses at start and on reload.
 *
 * @throws {ConfigError} Listing every problem.
 */
export async function loadConfigForHost(
  path: string,
  options: ParseConfigOptions = {},
): Promise<Config> {
  const config = await loadConfigFile(path, options);
  const errors = nonLocalListenErrors(config, hostAddresses());
  if (errors.length > 0) throw new ConfigError(errors);
  return config;
}

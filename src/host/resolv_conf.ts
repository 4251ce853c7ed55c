/**
 * The resolv.conf source of the embedded default (host/default_config.ts): `/etc/resolv.conf`, or
 * systemd-resolved's upstream list when it names only resolved's stub; servers grouped by the
 * interface `ip route get` reaches them through, in resolv.conf order, each group one default
 * PvD; the first server's PvD has priority 100 and the search domains (resolv.conf does not say
 * which network they came from).
 *
 * @module
 */
import { ConfigError, type ListenAddress } from "../config/parse.ts";
import { errorMessage, type IpLiteral, parseIp } from "../config/schema.ts";
import type { IpRunner } from "./ip_command.ts";
import {
  describeInterface,
  type Group,
  isDomainName,
  isOwnServer,
  RESOLVED_STUB,
  routeServer,
  type RouteState,
} from "./interfaces.ts";

/** The host's resolver configuration. */
export const RESOLV_CONF = "/etc/resolv.conf";
/** systemd-resolved's list of its real upstream servers. */
export const RESOLVED_RESOLV_CONF = "/run/systemd/resolve/resolv.conf";

/** The parts of a resolv.conf file pvdns uses. */
export interface ResolvConf {
  /** `nameserver` addresses, in order. */
  readonly nameservers: readonly string[];
  /** The last `search` (or `domain`) line's domains. */
  readonly search: readonly string[];
}

/**
 * Reads the `nameserver` and `search`/`domain` lines of a resolv.conf file (resolv.conf(5)).
 *
 * @param text The file's contents.
 * @returns Name servers in order, and the search list (the last `search` or `domain` line wins).
 *
 * @example
 * ```ts
 * parseResolvConf("nameserver 192.0.2.1\nsearch example.net\n");
 * // { nameservers: ["192.0.2.1"], search: ["example.net"] }
 * ```
 */
export function parseResolvConf(text: string): ResolvConf {
  const nameservers: string[] = [];
  let search: string[] = [];
  for (const line of text.split("\n")) {
    const [keyword, ...args] = line.trim().split(/\s+/);
    if (keyword === "nameserver" && args[0] !== undefined) nameservers.push(args[0]);
    else if (keyword === "search" || keyword === "domain") search = args;
  }
  return { nameservers, search };
}

/** What {@linkcode pvdsFromResolvConf} reads the host with. */
export interface ResolvConfSource {
  /** Reads a text file. */
  readonly readFile: (path: string) => Promise<string>;
  /** Runs `ip -j …`. */
  readonly runIp: IpRunner;
  /** pvdns's own listen addresses. */
  readonly own: readonly ListenAddress[];
  /** Why the per-link sources read before gave nothing, added to the errors. */
  readonly linkSkipped: readonly string[];
}

/**
 * The PvDs of the host's resolv.conf, not yet validated.
 *
 * @throws {ConfigError} when resolv.conf cannot be read or no server is usable, saying why each
 * was skipped
 */
export async function pvdsFromResolvConf(
  host: ResolvConfSource,
): Promise<Record<string, unknown>[]> {
  const { readFile, runIp, own, linkSkipped } = host;
  let source = RESOLV_CONF;
  let conf: ResolvConf;
  try {
    conf = parseResolvConf(await readFile(RESOLV_CONF));
  } catch (error) {
    throw new ConfigError([
      `${RESOLV_CONF}: cannot read it: ${errorMessage(error)}`,
      ...linkSkipped,
    ]);
  }
  if (conf.nameservers.length > 0 && conf.nameservers.every((ns) => ns === RESOLVED_STUB)) {
    try {
      conf = parseResolvConf(await readFile(RESOLVED_RESOLV_CONF));
      source = RESOLVED_RESOLV_CONF;
    } catch {
      // Not systemd-resolved after all (perhaps pvdns itself): the stub address is dropped below.
    }
  }

  const skipped: string[] = [];
  const groups = new Map<string, Group>();
  const seen = new Set<string>();
  for (const text of conf.nameservers) {
    const why = await placeServer(text, { runIp, own, groups, seen });
    if (why !== undefined) skipped.push(`${source}: nameserver ${text}: ${why}`);
  }

  const pvds: Record<string, unknown>[] = [];
  for (const [dev, group] of groups) {
    const why = await describeInterface(dev, group, runIp);
    if (why !== undefined) {
      skipped.push(...group.servers.map((s) => `${source}: nameserver ${s.text}: ${why}`));
      continue;
    }
    const first = pvds.length === 0;
    pvds.push({
      id: `implicit:${dev}`,
      implicit: true,
      interface: dev,
      prefixes: group.prefixes,
      sourceAddresses: group.sources,
      servers: group.servers.map((s) => s.text),
      searchDomains: first ? conf.search.filter(isDomainName) : [],
      default: true,
      priority: first ? 100 : 0,
    });
  }
  if (pvds.length === 0) {
    throw new ConfigError([
      `no usable DNS server for the embedded default config in ${source}; ` +
      "write a config file and pass --config FILE",
      ...skipped,
      ...linkSkipped,
    ]);
  }
  return pvds;
}

/** Adds a resolv.conf server to its interface's group; returns why it was skipped, if it was. */
async function placeServer(
  text: string,
  state: RouteState,
): Promise<string | undefined> {
  let ip: IpLiteral;
  try {
    ip = parseIp(text, { zone: true });
  } catch (error) {
    return errorMessage(error);
  }
  const key = ip.zone ? `${ip.address}%${ip.zone}` : ip.address;
  if (isOwnServer(ip.address, 53, state.own)) {
    if (state.seen.has(key)) return "listed twice";
    state.seen.add(key);
    return "it is pvdns's own listen address";
  }
  return await routeServer({ ...ip, text: key }, state);
}

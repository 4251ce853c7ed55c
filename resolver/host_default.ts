/**
 * The embedded default config, used when `pvdns serve` runs without `--config`: one implicit PvD
 * per interface that reaches a server of the host's resolver configuration (`/etc/resolv.conf`).
 *
 * Choices (see also the README):
 * - `/etc/resolv.conf` naming only `127.0.0.53` means systemd-resolved's stub; its upstreams are
 *   read from `/run/systemd/resolve/resolv.conf` instead.
 * - A server equal to one of pvdns's own listen addresses (and always `127.0.0.53`) is dropped so
 *   that pvdns never forwards to itself; so is a local address when pvdns listens on a wildcard.
 * - Servers are grouped by the interface `ip route get` reaches them through, in resolv.conf
 *   order. Every such PvD is a default PvD; the first server's PvD has priority 100, the others 0,
 *   so the host's first choice wins and the others stand in when it disappears.
 * - Source addresses are the interface's global addresses (host scope on loopback), the route's
 *   preferred source first. Prefixes are the networks of those addresses, except on loopback,
 *   whose PvD gets none: otherwise every local client would be routed to it by source address.
 * - The resolv.conf search domains go to the first server's PvD (resolv.conf does not say which
 *   network they came from).
 * - A server whose family has no source address on its interface, or that has no route, is
 *   skipped; when none is left, a {@linkcode ConfigError} says why each was skipped.
 *
 * @module
 */
import { ConfigError, DEFAULT_LISTEN, type ListenAddress, validateConfig } from "./config.ts";
import {
  errorMessage,
  type IpLiteral,
  parseDomainName,
  parseIp,
  parseListenAddress,
} from "./config_schema.ts";
import type { Config } from "./config_types.ts";
import { type IpRunner, runIp as runIpCommand } from "../pvd/ip_command.ts";

/** The host's resolver configuration. */
export const RESOLV_CONF = "/etc/resolv.conf";
/** systemd-resolved's list of its real upstream servers. */
export const RESOLVED_RESOLV_CONF = "/run/systemd/resolve/resolv.conf";
const RESOLVED_STUB = "127.0.0.53";

/** What {@linkcode buildHostDefault} reads from the host; injectable for tests. */
export interface HostDeps {
  /** Reads a text file. @default Deno.readTextFile */
  readonly readFile?: (path: string) => Promise<string>;
  /**
   * Runs `ip -j ARGS…` (ARGS without `-j`, e.g. `["route", "get", "192.0.2.1"]`) and returns its
   * parsed JSON output; throws when `ip` fails. @default the `ip` command
   */
  readonly runIp?: IpRunner;
  /**
   * Where pvdns will listen (`ADDR:PORT`); they become the config's `listen`, and servers equal
   * to one of them are dropped. @default ["127.0.0.53:53"]
   */
  readonly listenAddresses?: readonly string[];
}

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

/**
 * Builds the embedded default config from the host: its resolver configuration, routes and
 * interface addresses. Host discovery is on. The listen address is `127.0.0.53:53` unless
 * `deps.listenAddresses` says otherwise; falling back to an unprivileged port when that cannot be
 * bound is the caller's (main.ts's) business.
 *
 * @param deps Injected file reader, `ip` runner and listen addresses; see {@linkcode HostDeps}.
 * @returns A config validated like a config file, with PvD origin `"host"`.
 * @throws {ConfigError} When resolv.conf cannot be read or no usable server is left.
 *
 * @example
 * ```ts
 * const config = await buildHostDefault();
 * config.pvds[0]?.id; // e.g. "implicit:eth0"
 * ```
 */
export async function buildHostDefault(deps: HostDeps = {}): Promise<Config> {
  const readFile = deps.readFile ?? ((path: string) => Deno.readTextFile(path));
  const runIp = deps.runIp ?? runIpCommand;
  const listen = deps.listenAddresses?.length ? [...deps.listenAddresses] : [DEFAULT_LISTEN];
  const own = listen.flatMap((text) => {
    try {
      return [parseListenAddress(text)];
    } catch {
      return []; // validateConfig reports it
    }
  });

  let source = RESOLV_CONF;
  let conf: ResolvConf;
  try {
    conf = parseResolvConf(await readFile(RESOLV_CONF));
  } catch (error) {
    throw new ConfigError([`${RESOLV_CONF}: cannot read it: ${errorMessage(error)}`]);
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
    ]);
  }
  try {
    return validateConfig({ listen, discovery: { host: true }, pvds }, { origin: "host" });
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    throw new ConfigError(error.errors.map((e) => `embedded default config: ${e}`));
  }
}

interface Server extends IpLiteral {
  /** Server string for the config: the address, with `%zone` when it has one. */
  readonly text: string;
}

interface Group {
  readonly servers: Server[];
  /** Preferred source addresses of the routes to the servers. */
  readonly prefsrc: string[];
  sources: string[];
  prefixes: string[];
}

/** Adds a resolv.conf server to its interface's group; returns why it was skipped, if it was. */
async function placeServer(
  text: string,
  state: {
    runIp: (args: string[]) => Promise<unknown>;
    own: readonly ListenAddress[];
    groups: Map<string, Group>;
    seen: Set<string>;
  },
): Promise<string | undefined> {
  let ip: IpLiteral;
  try {
    ip = parseIp(text, { zone: true });
  } catch (error) {
    return errorMessage(error);
  }
  const key = ip.zone ? `${ip.address}%${ip.zone}` : ip.address;
  if (state.seen.has(key)) return "listed twice";
  state.seen.add(key);
  if (
    ip.address === RESOLVED_STUB || state.own.some((l) => l.address === ip.address && l.port === 53)
  ) {
    return "it is pvdns's own listen address";
  }
  let route: Record<string, unknown> | undefined;
  try {
    const output = await state.runIp([
      "route",
      "get",
      ip.address,
      ...(ip.zone ? ["oif", ip.zone] : []),
    ]);
    route = Array.isArray(output) ? output[0] : undefined;
  } catch (error) {
    return `no route: ${errorMessage(error)}`;
  }
  if (typeof route?.dev !== "string") return "no route";
  const wildcard = state.own.some((l) =>
    l.port === 53 && (l.address === "0.0.0.0" || l.address === "::")
  );
  if (wildcard && route.type === "local") return "it is a local address pvdns listens on";
  const group = state.groups.get(route.dev) ??
    { servers: [], prefsrc: [], sources: [], prefixes: [] };
  state.groups.set(route.dev, group);
  group.servers.push({ ...ip, text: key });
  if (typeof route.prefsrc === "string") group.prefsrc.push(route.prefsrc);
  return undefined;
}

/** Fills in a group's source addresses and prefixes; drops servers of a family it cannot send. */
async function describeInterface(
  dev: string,
  group: Group,
  runIp: (args: string[]) => Promise<unknown>,
): Promise<string | undefined> {
  let link: Record<string, unknown> | undefined;
  try {
    const output = await runIp(["addr", "show", "dev", dev]);
    link = Array.isArray(output) ? output[0] : undefined;
  } catch (error) {
    return `cannot list the addresses of ${dev}: ${errorMessage(error)}`;
  }
  const loopback = link?.link_type === "loopback";
  const addresses: { address: string; prefix: string }[] = [];
  for (const info of Array.isArray(link?.addr_info) ? link.addr_info : []) {
    const { local, prefixlen, scope, tentative, dadfailed } = info as Record<string, unknown>;
    if (typeof local !== "string" || tentative || dadfailed) continue;
    if (scope !== (loopback ? "host" : "global")) continue;
    addresses.push({ address: local, prefix: `${local}/${prefixlen}` });
  }
  // The kernel's preferred source first; an IPv6 link-local one needs a scope, so is left out.
  const usable = group.prefsrc.filter((a) => !/^fe[89ab]/i.test(a));
  group.sources = [...new Set([...usable, ...addresses.map((a) => a.address)])].filter((a) => {
    try {
      return parseIp(a) !== undefined;
    } catch {
      return false;
    }
  });
  group.prefixes = loopback ? [] : addresses.map((a) => a.prefix);
  const families = new Set(group.sources.map((a) => parseIp(a).family));
  const kept = group.servers.filter((s) => families.has(s.family));
  if (kept.length === 0) return `interface ${dev} has no address to send from`;
  group.servers.splice(0, group.servers.length, ...kept);
  return undefined;
}

function isDomainName(text: string): boolean {
  try {
    return parseDomainName(text) !== "";
  } catch {
    return false;
  }
}

/** Runs `ip -j ARGS…` and parses its JSON output. */

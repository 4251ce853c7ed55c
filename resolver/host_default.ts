/**
 * The embedded default config, used when `pvdns serve` runs without `--config`: one implicit PvD
 * per network the host's resolver configuration names servers for. Read in this order, the first
 * that gives at least one usable PvD wins:
 *
 * 1. **systemd-resolved's per-link configuration** (`resolvectl`, see `pvd/host_links.ts`): one PvD
 *    `implicit:IFACE` per link with servers, plus `implicit:global:IFACE` for resolved's global
 *    servers (resolved.conf `DNS=`), grouped by the interface `ip route get` reaches them through.
 * 2. **NetworkManager's per-device configuration** (`nmcli`): one PvD `implicit:IFACE` per device
 *    with servers.
 * 3. **`/etc/resolv.conf`**: servers grouped by the interface `ip route get` reaches them through.
 *    `/etc/resolv.conf` naming only `127.0.0.53` means systemd-resolved's stub; its upstreams are
 *    read from `/run/systemd/resolve/resolv.conf` instead.
 *
 * Choices (see also the README):
 * - pvdns only reads: it runs `resolvectl`/`nmcli` query commands and changes nothing in either
 *   daemon. A tool that is missing or fails (daemon not running) is simply skipped.
 * - Per link: the link's own servers (no `ip route get`); `searchDomains` are its search domains;
 *   `dnsZones` are its routing domains (`~corp.example.com` → `corp.example.com.`) **and** its
 *   search domains, because systemd-resolved (and NetworkManager, which feeds it) routes queries
 *   under a search domain to that link too; `~` only keeps a domain out of the search list.
 * - Default PvDs mirror systemd-resolved's DefaultRoute: a link is a default when resolved says
 *   DefaultRoute=yes (`resolvectl default-route`), or, when that is not known, when it has no
 *   routing-only domain or has `~.` (the root as routing domain: "send everything here"). So a VPN
 *   link with only `~corp.example.com` answers that zone and nothing else. resolved's global
 *   servers are always a default, as its global scope is.
 * - Priority (pvdns asks one default PvD, resolved asks all of them at once): 100 for the first
 *   default PvD with `~.`, else the first on the interface of the kernel's main default route
 *   (`ip route show default`, lowest metric, IPv4 first), else the first; the others 0 and stand
 *   in, in the tool's order (links before global servers).
 * - systemd-resolved with DNSOverTLS=yes in effect for a link: its servers become `tls://ADDR#NAME`
 *   (port 853 unless given); a server without a name is skipped, never downgraded to plain DNS.
 *   `opportunistic` and `no` give plain DNS (opportunistic allows it).
 * - A link whose interface does not exist (any more), or has another index than resolved says, is
 *   skipped; when no link is usable, the next source is read. Both daemons describe PID 1's
 *   network namespace: from another one (`ip netns exec`) they are not asked at all, when pvdns
 *   can tell (see `pvd/host_links.ts`).
 * - With resolv.conf: servers are grouped by the interface `ip route get` reaches them through, in
 *   resolv.conf order. Every such PvD is a default PvD; the first server's PvD has priority 100,
 *   the others 0, so the host's first choice wins and the others stand in when it disappears. The
 *   resolv.conf search domains go to the first server's PvD (resolv.conf does not say which
 *   network they came from).
 * - A server equal to one of pvdns's own listen addresses (and always `127.0.0.53`) is dropped so
 *   that pvdns never forwards to itself; so is a local address when pvdns listens on a wildcard.
 * - Source addresses are the interface's global addresses (host scope on loopback), the route's
 *   preferred source first. Prefixes are the networks of those addresses, except on loopback,
 *   whose PvD gets none: otherwise every local client would be routed to it by source address.
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
import {
  type DnsOverTlsMode,
  type HostLinks,
  type HostServer,
  type LinkDns,
  readNetworkManagerLinks,
  readResolvedLinks,
  runHostCommand,
} from "../pvd/host_links.ts";

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
   * Runs `resolvectl` or `nmcli` (`command`, `args`) and returns its standard output; throws when
   * the command is missing or fails, which leaves that source out. @default the real commands,
   * asked only from PID 1's network namespace
   */
  readonly runCommand?: (command: string, args: string[]) => Promise<string>;
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
 * Builds the embedded default config from the host: systemd-resolved's or NetworkManager's
 * per-link DNS configuration when present, else its resolv.conf; its routes and interface
 * addresses. Host discovery is on. The listen address is `127.0.0.53:53` unless
 * `deps.listenAddresses` says otherwise; falling back to an unprivileged port when that cannot be
 * bound is the caller's (main.ts's) business.
 *
 * @param deps Injected file reader, `ip` and command runners and listen addresses; see
 *   {@linkcode HostDeps}.
 * @returns A config validated like a config file, with PvD origin `"host"`.
 * @throws {ConfigError} When no source gives a usable server (resolv.conf unreadable, or every
 *   server skipped).
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
  const runCommand = deps.runCommand ?? runHostCommand;
  const listen = deps.listenAddresses?.length ? [...deps.listenAddresses] : [DEFAULT_LISTEN];
  const own = listen.flatMap((text) => {
    try {
      return [parseListenAddress(text)];
    } catch {
      return []; // validateConfig reports it
    }
  });

  // Per-link sources first; each is read only when the one before gave nothing usable.
  const linkSkipped: string[] = [];
  for (const read of [readResolvedLinks, readNetworkManagerLinks]) {
    const host = await read(runCommand);
    if (host === undefined) continue;
    const pvds = await pvdsFromLinks(host, { runIp, own, skipped: linkSkipped });
    if (pvds.length > 0) return finish(listen, pvds);
  }

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
  return finish(listen, pvds);
}

function finish(listen: string[], pvds: Record<string, unknown>[]): Config {
  try {
    return validateConfig({ listen, discovery: { host: true }, pvds }, { origin: "host" });
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    throw new ConfigError(error.errors.map((e) => `embedded default config: ${e}`));
  }
}

interface Server extends IpLiteral {
  /** Server string for the config: the address (`%zone`, `:port`, `tls://…#NAME` as needed). */
  readonly text: string;
}

interface Group {
  readonly servers: Server[];
  /** Preferred source addresses of the routes to the servers. */
  readonly prefsrc: string[];
  sources: string[];
  prefixes: string[];
}

const newGroup = (): Group => ({ servers: [], prefsrc: [], sources: [], prefixes: [] });

/** A PvD made from per-link data, before priorities are handed out. */
interface LinkPvd {
  readonly pvd: Record<string, unknown> & { priority: number };
  /** Claims the root as routing domain (`~.`). */
  readonly everything: boolean;
}

/**
 * The PvDs of systemd-resolved's links (and its global servers) or NetworkManager's devices.
 * Reasons for skipped servers and links go to `state.skipped`.
 */
async function pvdsFromLinks(
  host: HostLinks,
  state: { runIp: IpRunner; own: readonly ListenAddress[]; skipped: string[] },
): Promise<Record<string, unknown>[]> {
  const { runIp, own, skipped } = state;
  const made: LinkPvd[] = [];
  const wildcard = own.some((l) =>
    l.port === 53 && (l.address === "0.0.0.0" || l.address === "::")
  );

  for (const link of host.links) {
    const dev = link.interface!;
    const where = `${host.source}: link ${dev}`;
    const group = newGroup();
    for (const entry of link.servers) {
      const server = linkServer(entry, dev, link.dnsOverTls, own);
      if (typeof server === "string") skipped.push(`${where}: server ${show(entry)}: ${server}`);
      else if (group.servers.some((s) => s.text === server.text)) continue;
      else group.servers.push(server);
    }
    if (group.servers.length === 0) continue;
    const dropped: Server[] = [];
    const why = await describeInterface(dev, group, runIp, {
      ifindex: link.ifindex,
      dropLocal: wildcard ? dropped : undefined,
    });
    skipped.push(
      ...dropped.map((s) => `${where}: server ${s.text}: it is a local address pvdns listens on`),
    );
    if (why !== undefined) {
      skipped.push(`${where}: ${why}`);
      continue;
    }
    made.push(linkPvd(`implicit:${dev}`, dev, group, link, isDefaultLink(link)));
  }

  if (host.global) {
    // Global servers belong to no link: grouped by route, like resolv.conf's.
    const global = host.global;
    const where = `${host.source}: global server`;
    const groups = new Map<string, Group>();
    const seen = new Set<string>();
    for (const entry of global.servers) {
      const server = linkServer(entry, undefined, global.dnsOverTls, own);
      const why = typeof server === "string"
        ? server
        : await routeServer(server, { runIp, own, groups, seen });
      if (why !== undefined) skipped.push(`${where} ${show(entry)}: ${why}`);
    }
    for (const [dev, group] of groups) {
      const why = await describeInterface(dev, group, runIp);
      if (why !== undefined) {
        skipped.push(...group.servers.map((s) => `${where} ${s.text}: ${why}`));
        continue;
      }
      made.push(linkPvd(`implicit:global:${dev}`, dev, group, global, true));
    }
  }

  const defaults = made.filter((m) => m.pvd.default);
  let preferred = defaults.find((m) => m.everything);
  if (preferred === undefined && defaults.length > 1) {
    const dev = await defaultRouteInterface(runIp);
    preferred = defaults.find((m) => m.pvd.interface === dev);
  }
  preferred ??= defaults[0];
  if (preferred) preferred.pvd.priority = 100;
  return made.map((m) => m.pvd);
}

function linkPvd(
  id: string,
  dev: string,
  group: Group,
  link: LinkDns,
  isDefault: boolean,
): LinkPvd {
  const search = link.searchDomains.filter(isDomainName);
  const routing = link.routingDomains.filter((d) => d !== "." && isDomainName(d));
  const zones = [...new Set([...routing, ...search].map((d) => parseDomainName(d)))];
  return {
    pvd: {
      id,
      implicit: true,
      interface: dev,
      prefixes: group.prefixes,
      sourceAddresses: group.sources,
      servers: group.servers.map((s) => s.text),
      dnsZones: zones,
      searchDomains: search,
      default: isDefault,
      priority: 0,
    },
    everything: link.routingDomains.includes("."),
  };
}

/**
 * systemd-resolved's DefaultRoute: `~.` always makes a link a default; otherwise resolved's own
 * answer (`resolvectl default-route`) when known, else its rule for links that did not set
 * DefaultRoute=: a default unless it has a routing-only domain.
 */
function isDefaultLink(link: LinkDns): boolean {
  if (link.routingDomains.includes(".")) return true;
  return link.defaultRoute ?? link.routingDomains.length === 0;
}

/** A per-link (or resolved global) server as a config server, or why it is skipped. */
function linkServer(
  entry: HostServer,
  dev: string | undefined,
  tls: DnsOverTlsMode | undefined,
  own: readonly ListenAddress[],
): Server | string {
  let ip: IpLiteral;
  try {
    ip = parseIp(entry.address);
  } catch (error) {
    return errorMessage(error);
  }
  const linkLocal = ip.family === 6 && /^fe[89ab]/i.test(ip.address);
  const zone = entry.zone ?? (linkLocal ? dev : undefined);
  if (zone !== undefined && !linkLocal) return "a zone is only allowed on a link-local address";
  if (zone !== undefined && !/^[\w.-]{1,15}$/.test(zone)) return `invalid zone ${zone}`;
  const host = zone !== undefined ? `${ip.address}%${zone}` : ip.address;
  const bracketed = ip.family === 6 ? `[${host}]` : host;
  const withZone: IpLiteral = zone !== undefined ? { ...ip, zone } : ip;
  if (tls === "yes") {
    // Strict DNS over TLS: never downgrade to plain DNS.
    if (entry.name === undefined) {
      return "DNSOverTLS=yes, and the server has no name (ADDR#NAME) to verify its certificate by";
    }
    const port = entry.port !== undefined ? `:${entry.port}` : "";
    return { ...withZone, text: `tls://${bracketed}${port}#${entry.name}` };
  }
  const port = entry.port ?? 53;
  if (
    ip.address === RESOLVED_STUB || own.some((l) => l.address === ip.address && l.port === port)
  ) {
    return "it is pvdns's own listen address";
  }
  return { ...withZone, text: port === 53 ? host : `${bracketed}:${port}` };
}

function show(entry: HostServer): string {
  const host = entry.zone !== undefined ? `${entry.address}%${entry.zone}` : entry.address;
  const port = entry.port !== undefined
    ? (host.includes(":") ? `[${host}]:${entry.port}` : `${host}:${entry.port}`)
    : host;
  return entry.name !== undefined ? `${port}#${entry.name}` : port;
}

/** The interface of the kernel's main default route (lowest metric; IPv4, else IPv6). */
async function defaultRouteInterface(runIp: IpRunner): Promise<string | undefined> {
  for (const args of [["route", "show", "default"], ["-6", "route", "show", "default"]]) {
    let routes: unknown;
    try {
      routes = await runIp(args);
    } catch {
      continue;
    }
    const best = (Array.isArray(routes) ? routes : [])
      .filter((r): r is { dev: string; metric?: unknown } => typeof r?.dev === "string")
      .sort((a, b) => metric(a) - metric(b))[0];
    if (best) return best.dev;
  }
  return undefined;
}

const metric = (route: { metric?: unknown }) => typeof route.metric === "number" ? route.metric : 0;

/** Adds a resolv.conf server to its interface's group; returns why it was skipped, if it was. */
async function placeServer(
  text: string,
  state: {
    runIp: IpRunner;
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
  if (
    ip.address === RESOLVED_STUB || state.own.some((l) => l.address === ip.address && l.port === 53)
  ) {
    if (state.seen.has(key)) return "listed twice";
    state.seen.add(key);
    return "it is pvdns's own listen address";
  }
  return await routeServer({ ...ip, text: key }, state);
}

/** Adds a server to the group of the interface `ip route get` reaches it through, or says why not. */
async function routeServer(
  server: Server,
  state: {
    runIp: IpRunner;
    own: readonly ListenAddress[];
    groups: Map<string, Group>;
    seen: Set<string>;
  },
): Promise<string | undefined> {
  if (state.seen.has(server.text)) return "listed twice";
  state.seen.add(server.text);
  let route: Record<string, unknown> | undefined;
  try {
    const output = await state.runIp([
      "route",
      "get",
      server.address,
      ...(server.zone ? ["oif", server.zone] : []),
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
  const group = state.groups.get(route.dev) ?? newGroup();
  state.groups.set(route.dev, group);
  group.servers.push(server);
  if (typeof route.prefsrc === "string") group.prefsrc.push(route.prefsrc);
  return undefined;
}

/**
 * Fills in a group's source addresses and prefixes; drops servers of a family it cannot send.
 * With `ifindex`, the interface must still have the index systemd-resolved gave (it may have been
 * replaced by a namesake since). With `dropLocal`, servers that are addresses of the interface itself
 * are dropped and collected there (pvdns listens on a wildcard address).
 */
async function describeInterface(
  dev: string,
  group: Group,
  runIp: IpRunner,
  options: { ifindex?: number; dropLocal?: Server[] } = {},
): Promise<string | undefined> {
  let link: Record<string, unknown> | undefined;
  try {
    const output = await runIp(["addr", "show", "dev", dev]);
    link = Array.isArray(output) ? output[0] : undefined;
  } catch (error) {
    return `cannot list the addresses of ${dev}: ${errorMessage(error)}`;
  }
  if (options.ifindex !== undefined && link?.ifindex !== options.ifindex) {
    return `interface ${dev} has index ${link?.ifindex} here, not ${options.ifindex}`;
  }
  const loopback = link?.link_type === "loopback";
  const addresses: { address: string; prefix: string }[] = [];
  const local = new Set<string>();
  for (const info of Array.isArray(link?.addr_info) ? link.addr_info : []) {
    const { local: address, prefixlen, scope, tentative, dadfailed } = info as Record<
      string,
      unknown
    >;
    if (typeof address !== "string") continue;
    local.add(address);
    if (tentative || dadfailed) continue;
    if (scope !== (loopback ? "host" : "global")) continue;
    addresses.push({ address, prefix: `${address}/${prefixlen}` });
  }
  if (options.dropLocal) {
    const [mine, others] = partition(group.servers, (s) => local.has(s.address));
    options.dropLocal.push(...mine);
    group.servers.splice(0, group.servers.length, ...others);
    if (others.length === 0) return `no server left on ${dev}`;
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

function partition<T>(items: readonly T[], test: (item: T) => boolean): [T[], T[]] {
  return [items.filter(test), items.filter((item) => !test(item))];
}

function isDomainName(text: string): boolean {
  try {
    return parseDomainName(text) !== "";
  } catch {
    return false;
  }
}

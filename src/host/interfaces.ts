/**
 * The host's DNS servers grouped by the interface that reaches them, for the embedded default
 * (host/default_config.ts): `ip route get` places a server on its interface, `ip addr show` gives
 * the
 * interface's source addresses and prefixes, and servers pvdns would forward to itself (its own
 * listen addresses, systemd-resolved's stub `127.0.0.53`) are left out.
 *
 * @module
 */
import type { ListenAddress } from "../config/parse.ts";
import { errorMessage, type IpLiteral, parseDomainName, parseIp } from "../config/schema.ts";
import type { IpRunner } from "./ip_command.ts";

/** systemd-resolved's stub listener: never an upstream of pvdns. */
export const RESOLVED_STUB = "127.0.0.53";

/** A host DNS server as the config will name it. */
export interface Server extends IpLiteral {
  /** Server string for the config: the address (`%zone`, `:port`, `tls://…#NAME` as needed). */
  readonly text: string;
}

/** The servers one interface reaches, with what the PvD made of them sends from. */
export interface Group {
  /** The servers, in the order the host lists them. */
  readonly servers: Server[];
  /** Preferred source addresses of the routes to the servers. */
  readonly prefsrc: string[];
  /** Source addresses, filled in by {@linkcode describeInterface}. */
  sources: string[];
  /** Prefixes, filled in by {@linkcode describeInterface}. */
  prefixes: string[];
}

/** An empty {@linkcode Group}. */
export function newGroup(): Group {
  return { servers: [], prefsrc: [], sources: [], prefixes: [] };
}

/** What {@linkcode routeServer} places servers with. */
export interface RouteState {
  /** Runs `ip -j …`. */
  readonly runIp: IpRunner;
  /** pvdns's own listen addresses. */
  readonly own: readonly ListenAddress[];
  /** The groups so far, by interface name. */
  readonly groups: Map<string, Group>;
  /** Servers placed or refused so far, so that one listed twice is said so. */
  readonly seen: Set<string>;
}

/** True when pvdns would reach itself at `address`:`port` (its listen address, resolved's stub). */
export function isOwnServer(address: string, port: number, own: readonly ListenAddress[]): boolean {
  return address === RESOLVED_STUB || own.some((l) => l.address === address && l.port === port);
}

/** True when pvdns listens on port 53 of a wildcard address (then every local address is itself). */
export function listensOnWildcard(own: readonly ListenAddress[]): boolean {
  return own.some((l) => l.port === 53 && (l.address === "0.0.0.0" || l.address === "::"));
}

/** Adds a server to the group of the interface `ip route get` reaches it through, or says why not. */
export async function routeServer(
  server: Server,
  state: RouteState,
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
  if (listensOnWildcard(state.own) && route.type === "local") {
    return "it is a local address pvdns listens on";
  }
  const group = state.groups.get(route.dev) ?? newGroup();
  state.groups.set(route.dev, group);
  group.servers.push(server);
  if (typeof route.prefsrc === "string") group.prefsrc.push(route.prefsrc);
  return undefined;
}

/**
 * Fills in a group's source addresses and prefixes; drops servers of a family it cannot send.
 * With `ifindex`, the interface must still have the index systemd-resolved gave (it may have been
 * replaced by a namesake since). With `dropLocal`, servers that are addresses of the interface
 * itself
 * are dropped and collected there (pvdns listens on a wildcard address).
 */
export async function describeInterface(
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

/** True when `text` parses as a domain name other than the root. */
export function isDomainName(text: string): boolean {
  try {
    return parseDomainName(text) !== "";
  } catch {
    return false;
  }
}

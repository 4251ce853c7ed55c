/**
 * The per-link sources of the embedded default (host/default_config.ts): one PvD `implicit:IFACE`
 * per
 * systemd-resolved link or NetworkManager device with servers, plus `implicit:global:IFACE` for
 * resolved's global servers grouped by route; zones, search domains, DefaultRoute, DNS over TLS
 * and the one default PvD with priority 100, as the module doc of host/default_config.ts says. A
 * link
 * with `~.` is marked `rootRoutingDomain` (it asks for every name, a full tunnel): zones that other
 * links learned from the network may not capture names from it (src/policy/zone_claims.ts).
 *
 * @module
 */
import type { ListenAddress } from "../config/parse.ts";
import type { Config } from "../config/types.ts";
import { errorMessage, type IpLiteral, parseDomainName, parseIp } from "../config/schema.ts";
import type { IpRunner } from "./ip_command.ts";
import type { DnsOverTlsMode, HostLinks, HostServer, LinkDns } from "./resolved_links.ts";
import {
  describeInterface,
  type Group,
  isDomainName,
  isOwnServer,
  listensOnWildcard,
  newGroup,
  routeServer,
  type Server,
} from "./interfaces.ts";

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
export async function pvdsFromLinks(
  host: HostLinks,
  state: { runIp: IpRunner; own: readonly ListenAddress[]; skipped: string[] },
): Promise<Record<string, unknown>[]> {
  const { runIp, own, skipped } = state;
  const made: LinkPvd[] = [];
  const wildcard = listensOnWildcard(own);

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
  const everything = link.routingDomains.includes(".");
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
      ...(everything ? { rootRoutingDomain: true } : {}),
    },
    everything,
  };
}

/**
 * Validates link PvD records with `validate`, which gets them without their `rootRoutingDomain`
 * mark (a config file cannot say it: the schema refuses the key), and puts the mark back on the
 * validated PvDs (same order as the records).
 */
export function validateLinkPvds(
  records: readonly Record<string, unknown>[],
  validate: (records: Record<string, unknown>[]) => Config,
): Config {
  const marked = records.map((r) => r.rootRoutingDomain === true);
  const config = validate(records.map(({ rootRoutingDomain: _, ...rest }) => rest));
  if (!marked.includes(true)) return config;
  const pvds = config.pvds.map((p, i) =>
    marked[i] ? Object.freeze({ ...p, rootRoutingDomain: true }) : p
  );
  return Object.freeze({ ...config, pvds: Object.freeze(pvds) });
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
  if (isOwnServer(ip.address, port, own)) {
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

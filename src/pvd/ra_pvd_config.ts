/**
 * The config of one RA-learned PvD (`ra_pvds.ts`'s {@linkcode RaPvd}), as the resolver runs it:
 * DNR resolvers first (lowest SvcPriority first; `dot` → `tls://`, `h2`/`h3` with `dohpath` →
 * `https://`), then RDNSS servers as Do53; the interface's global addresses inside the PvD's
 * prefixes as source addresses (non-temporary first; temporary first for the
 * `/.well-known/pvd` fetch), a link-local one too when a server needs a zone; the additional
 * information only while its prefixes cover the RA's. Zones: the additional information's
 * `dnsZones`, then the DNSSL domains (as systemd-resolved routes a link's search domains to it);
 * both came from the network, so `zoneSources` says which (`pvd-info`, `dnssl`) and the router
 * judges them (src/policy/zone_claims.ts).
 *
 * @module
 */

import type {
  Cidr,
  PvdAdditionalInfo,
  PvdConfig,
  ServerConfig,
  ZoneSource,
} from "../config/types.ts";
import { parseServer } from "../config/parse.ts";
import { prefixesCovered } from "./additional_info.ts";
import type { RaPvd } from "./ra_pvds.ts";

/** One IPv6 address of an interface, as `ip -j addr` shows it. */
export interface IfAddr {
  readonly address: string;
  readonly prefixLength: number;
  readonly linkLocal: boolean;
  readonly temporary: boolean;
  readonly deprecated: boolean;
  /** Tentative (DAD running) or DAD failed: cannot be bound. */
  readonly unusable: boolean;
}

/** Reads the IPv6 addresses of `iface` from `ip -j addr show dev IFACE` output. */
export function parseIpAddr(json: unknown): IfAddr[] {
  const out: IfAddr[] = [];
  for (const link of Array.isArray(json) ? json : []) {
    const infos = (link as { addr_info?: unknown }).addr_info;
    for (const a of Array.isArray(infos) ? infos as Record<string, unknown>[] : []) {
      if (a.family !== "inet6" || typeof a.local !== "string") continue;
      out.push({
        address: a.local,
        prefixLength: Number(a.prefixlen),
        linkLocal: a.scope === "link",
        temporary: a.temporary === true,
        deprecated: a.deprecated === true,
        unusable: a.tentative === true || a.dadfailed === true,
      });
    }
  }
  return out;
}

function inside(address: string, prefixes: readonly Cidr[]): boolean {
  return prefixesCovered(prefixes, [{
    text: `${address}/128`,
    family: 6,
    address,
    prefixLength: 128,
  }]);
}

/** What {@linkcode raPvdConfig} builds a PvD's config with. */
export interface RaPvdConfigInput {
  /** The IPv6 addresses of the PvD's interface (from {@linkcode parseIpAddr}). */
  readonly addresses: readonly IfAddr[];
  /** The PvD's additional information, when one was fetched (explicit PvDs only). */
  readonly info: PvdAdditionalInfo | undefined;
  /** Logs a line once per distinct key (unusable servers, uncovered information). */
  readonly logOnce: (key: string, line: string) => void;
}

/** The config of RA PvD `p`, and the source addresses to fetch its additional information from. */
export function raPvdConfig(
  p: RaPvd,
  input: RaPvdConfigInput,
): { config: PvdConfig; fetchSources: string[] } {
  const iface = p.interface;
  const prefixes = [...p.prefixes.values()].map((e) => e.cidr);
  const servers: ServerConfig[] = [];
  const dnr = [...p.dnr.values()].sort((a, b) => a.option.priority - b.option.priority);
  for (const e of dnr) {
    const adn = e.option.adn.toLowerCase().replace(/\.$/, "");
    const zone = /^fe[89ab]/i.test(e.address) ? `%${iface}` : "";
    const host = `[${e.address}${zone}]`;
    const texts: string[] = [];
    const alpn = e.option.alpn ?? [];
    if (alpn.includes("dot")) texts.push(`tls://${host}:${e.option.port ?? 853}#${adn}`);
    if (alpn.some((a) => a === "h2" || a === "h3" || a === "http/1.1") && e.option.dohpath) {
      texts.push(`https://${host}:${e.option.port ?? 443}${e.option.dohpath}#${adn}`);
    }
    for (const t of texts) {
      try {
        servers.push(parseServer(t));
      } catch (err) {
        input.logOnce(
          `dnr|${t}`,
          `PvD ${p.id}: DNR resolver ${t} unusable: ${(err as Error).message}`,
        );
      }
    }
  }
  for (const address of p.rdnss.keys()) {
    try {
      servers.push(parseServer(address));
    } catch (err) {
      input.logOnce(
        `rdnss|${address}`,
        `PvD ${p.id}: RDNSS ${address} unusable: ${(err as Error).message}`,
      );
    }
  }
  const addrs = input.addresses.filter((a) => !a.unusable);
  const globals = addrs.filter((a) => !a.linkLocal && inside(a.address, prefixes));
  const rank = (a: IfAddr, temporaryFirst: boolean) =>
    (a.deprecated ? 2 : 0) + (a.temporary === temporaryFirst ? 0 : 1);
  const sourceAddresses = [...globals].sort((a, b) => rank(a, false) - rank(b, false))
    .map((a) => a.address);
  const fetchSources = [...globals].sort((a, b) => rank(a, true) - rank(b, true))
    .map((a) => a.address);
  if (servers.some((s) => s.zone)) {
    const ll = addrs.find((a) => a.linkLocal);
    if (ll) sourceAddresses.push(`${ll.address}%${iface}`);
  }
  let info = input.info;
  if (info && !prefixesCovered(info.prefixes, prefixes)) {
    input.logOnce(
      `cover|${p.id}|${prefixes.map((c) => c.text).join(",")}`,
      `PvD ${p.id}: additional information not used: its prefixes do not cover the RA's`,
    );
    info = undefined;
  }
  const searchDomains = [...p.dnssl.keys()];
  const zoneSources: Record<string, ZoneSource> = {};
  for (const z of info?.dnsZones ?? []) zoneSources[z] ??= "pvd-info";
  // A network never claims the root (additional_info.ts drops it from dnsZones too).
  for (const z of searchDomains) if (z !== ".") zoneSources[z] ??= "dnssl";
  const config: PvdConfig = {
    id: p.id,
    implicit: p.implicit,
    origin: "ra",
    interface: iface,
    prefixes,
    sourceAddresses,
    servers,
    dnsZones: Object.keys(zoneSources),
    searchDomains,
    zoneSources,
    default: p.routers.size > 0 && !info?.noInternet,
    priority: 0,
    strictRoutes: false,
    ...(info ? { additionalInfo: info } : {}),
  };
  return { config, fetchSources };
}

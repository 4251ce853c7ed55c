/**
 * A PvD as applications see it: the JSON shape returned by the library's `listPvds()` /
 * `getPvd()` and by the control API's `GET /v1/pvds`. Plain strings and numbers only, so the
 * in-process library and a remote client over HTTP hand out the very same objects.
 *
 * @module
 */

import { judgeZoneClaims } from "../policy/zone_claims.ts";
import type { PvdEvent } from "./registry.ts";
import { parseCidr, parseServer } from "../config/schema.ts";
import type {
  PvdAdditionalInfo,
  PvdConfig,
  PvdOrigin,
  ZoneClaimReason,
  ZoneSource,
} from "../config/types.ts";

/** RFC 8801 additional information of a PvD, as JSON. */
export interface PvdAdditionalInfoJson {
  /** The PvD ID the document names. */
  readonly identifier: string;
  /** When the document expires, RFC 3339. */
  readonly expires: string;
  /** Prefixes the document lists, e.g. `"2001:db8:1::/48"`. */
  readonly prefixes: readonly string[];
  /** Zones the document lists (lower case, trailing dot). */
  readonly dnsZones?: readonly string[];
  /** The PvD gives no Internet access. */
  readonly noInternet?: boolean;
  /** When pvdns fetched it, ISO time. */
  readonly fetchedAt: string;
}

/** One zone a PvD claims: where the claim came from and whether it is routed. */
export interface PvdZoneJson {
  /** The zone, lower case, trailing dot. */
  readonly zone: string;
  /** `config` (the config file) or where the network said it (`dnssl`, `pvd-info`, …). */
  readonly source: ZoneSource;
  /** Only accepted zones are routed to the PvD. */
  readonly accepted: boolean;
  /** Why (src/policy/zone_claims.ts): `config`, `private-use`, `public-suffix`, `full-tunnel`, … */
  readonly reason: ZoneClaimReason;
  /** The reason in words. */
  readonly detail: string;
}

/**
 * One provisioning domain as an application sees it.
 *
 * @example Reading a PvD
 * ```ts ignore
 * const pvd: PvdInfo = (await resolver.getPvd("vpn.example.com"))!;
 * console.log(pvd.origin, pvd.sourceAddresses); // "config" ["10.8.0.2"]
 * ```
 */
export interface PvdInfo {
  /** PvD ID: an FQDN for an explicit PvD, a local name (e.g. `implicit:eth0`) for an implicit one. */
  readonly id: string;
  /** True for a PvD the host grouped itself (RFC 7556 implicit PvD). */
  readonly implicit: boolean;
  /** Where it came from: the config file, the host's own configuration, or a router advertisement. */
  readonly origin: PvdOrigin;
  /** Its network interface, when known. */
  readonly interface?: string;
  /** Prefixes its addresses live in, e.g. `["192.0.2.0/24"]`. */
  readonly prefixes: readonly string[];
  /** Local addresses to bind to when talking through this PvD. */
  readonly sourceAddresses: readonly string[];
  /** Its DNS servers as configured (`192.0.2.1`, `tls://…`, `https://…`). */
  readonly servers: readonly string[];
  /** Zones it claims (lower case, trailing dot); `zones` says which are routed to it. */
  readonly dnsZones: readonly string[];
  /** Each of `dnsZones` with where it came from and whether the claim is accepted. */
  readonly zones: readonly PvdZoneJson[];
  /** Zones its network may claim even against a higher-priority full-tunnel PvD (config). */
  readonly acceptZones?: readonly string[];
  /** Its host link has systemd-resolved's `~.`: it asks for every name. */
  readonly rootRoutingDomain?: boolean;
  /** Its search domains (lower case, trailing dot). */
  readonly searchDomains: readonly string[];
  /** It may answer names no PvD claims. */
  readonly default: boolean;
  /** Higher wins among default PvDs and zone ties. */
  readonly priority: number;
  /** Queries fail closed when the kernel would reach a server through another interface. */
  readonly strictRoutes: boolean;
  /** Whether its servers may be asked in clear (`strict`, `prefer`, `off`), when the config says. */
  readonly encryption?: PvdConfig["encryption"];
  /** `block`: private addresses are dropped from answers outside its zones, when set. */
  readonly rebind?: PvdConfig["rebind"];
  /** RFC 8801 additional information (`/.well-known/pvd`), when pvdns has it. */
  readonly additionalInfo?: PvdAdditionalInfoJson;
}

/**
 * One change of the PvD set, as `watchPvds()` yields it.
 *
 * @example Reacting to a change
 * ```ts ignore
 * for await (const change of resolver.watchPvds()) console.log(change.type, change.pvd.id);
 * ```
 */
export type PvdChange = PvdEvent<PvdInfo>;

/**
 * The fields of {@linkcode PvdConfig} the application view leaves out: `caFile` is a path on the
 * daemon's host, `parallel` and `trustAd` are how pvdns asks, not what the network is;
 * `zoneSources` and `zoneClaims` are shown as `zones`.
 */
type NotInView = "caFile" | "parallel" | "trustAd" | "zoneSources" | "zoneClaims";
// Checked at compile time: a field added to PvdConfig (or to the RFC 8801 document) fails type
// checking here until the view shows it or NotInView says why it does not.
type Empty<T extends never> = T;
type _ViewCoversConfig = Empty<Exclude<keyof PvdConfig, keyof PvdInfo | NotInView>>;
type _ViewCoversAdditionalInfo = Empty<
  Exclude<keyof PvdAdditionalInfo, keyof PvdAdditionalInfoJson>
>;

/**
 * The application view of a running PvD. Its zone verdicts are those the registry judged against
 * the PvDs in force (`zoneClaims`); a PvD without them is judged alone.
 */
export function pvdInfo(p: PvdConfig): PvdInfo {
  const a = p.additionalInfo;
  const claims = p.zoneClaims ?? judgeZoneClaims([p]);
  return {
    id: p.id,
    implicit: p.implicit,
    origin: p.origin,
    ...(p.interface === undefined ? {} : { interface: p.interface }),
    prefixes: p.prefixes.map((c) => c.text),
    sourceAddresses: [...p.sourceAddresses],
    servers: p.servers.map((s) => s.text),
    dnsZones: [...p.dnsZones],
    zones: claims.map((c) => ({
      zone: c.zone,
      source: c.source,
      accepted: c.accepted,
      reason: c.reason,
      detail: c.detail,
    })),
    ...(p.acceptZones ? { acceptZones: [...p.acceptZones] } : {}),
    ...(p.rootRoutingDomain ? { rootRoutingDomain: true } : {}),
    searchDomains: [...p.searchDomains],
    default: p.default,
    priority: p.priority,
    strictRoutes: p.strictRoutes,
    ...(p.encryption ? { encryption: p.encryption } : {}),
    ...(p.rebind ? { rebind: p.rebind } : {}),
    ...(a
      ? {
        additionalInfo: {
          identifier: a.identifier,
          expires: a.expires,
          prefixes: a.prefixes.map((c) => c.text),
          ...(a.dnsZones ? { dnsZones: [...a.dnsZones] } : {}),
          ...(a.noInternet === undefined ? {} : { noInternet: a.noInternet }),
          fetchedAt: a.fetchedAt,
        },
      }
      : {}),
  };
}

/**
 * A PvD's config rebuilt from its application view, so that a client can route with the PvDs in
 * force in a running daemon (`pvdns route --daemon`). The additional information is left out:
 * routing does not read it.
 *
 * @throws {Error} when a server or prefix of `info` does not parse
 */
export function pvdConfigFromInfo(info: PvdInfo): PvdConfig {
  return {
    id: info.id,
    implicit: info.implicit,
    origin: info.origin,
    ...(info.interface === undefined ? {} : { interface: info.interface }),
    prefixes: info.prefixes.map((c) => parseCidr(c)),
    sourceAddresses: [...info.sourceAddresses],
    servers: info.servers.map((s) => parseServer(s)),
    dnsZones: [...info.dnsZones],
    searchDomains: [...info.searchDomains],
    zoneSources: Object.fromEntries((info.zones ?? []).map((z) => [z.zone, z.source])),
    ...(info.acceptZones ? { acceptZones: [...info.acceptZones] } : {}),
    ...(info.rootRoutingDomain ? { rootRoutingDomain: true } : {}),
    default: info.default,
    priority: info.priority,
    strictRoutes: info.strictRoutes,
    ...(info.encryption ? { encryption: info.encryption } : {}),
    ...(info.rebind ? { rebind: info.rebind } : {}),
  };
}

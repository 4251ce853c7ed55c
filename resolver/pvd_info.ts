/**
 * A PvD as applications see it: the JSON shape returned by the library's `listPvds()` /
 * `getPvd()` and by the control API's `GET /v1/pvds`. Plain strings and numbers only, so the
 * in-process library and a remote client over HTTP hand out the very same objects.
 *
 * @module
 */

import type { PvdConfig, PvdOrigin } from "./config_types.ts";

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
  /** Zones it answers for (lower case, trailing dot). */
  readonly dnsZones: readonly string[];
  /** Its search domains (lower case, trailing dot). */
  readonly searchDomains: readonly string[];
  /** It may answer names no PvD claims. */
  readonly default: boolean;
  /** Higher wins among default PvDs and zone ties. */
  readonly priority: number;
  /** Queries fail closed when the kernel would reach a server through another interface. */
  readonly strictRoutes: boolean;
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
export interface PvdChange {
  /** `added`, `changed` (its cache was emptied) or `removed`. */
  readonly type: "added" | "changed" | "removed";
  /** The PvD after the change (before it, for `removed`). */
  readonly pvd: PvdInfo;
}

/** The application view of a running PvD. */
export function pvdInfo(p: PvdConfig): PvdInfo {
  const a = p.additionalInfo;
  return {
    id: p.id,
    implicit: p.implicit,
    origin: p.origin,
    ...(p.interface === undefined ? {} : { interface: p.interface }),
    prefixes: p.prefixes.map((c) => c.text),
    sourceAddresses: [...p.sourceAddresses],
    servers: p.servers.map((s) => s.text),
    dnsZones: [...p.dnsZones],
    searchDomains: [...p.searchDomains],
    default: p.default,
    priority: p.priority,
    strictRoutes: p.strictRoutes,
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

/** A PvD ID as pvdns keeps it: lower case, no trailing dot (`VPN.Example.com.` → `vpn.example.com`). */
export function normalizePvdId(id: string): string {
  return id.toLowerCase().replace(/\.$/, "");
}

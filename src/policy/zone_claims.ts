/**
 * Who may claim a zone (NEXT-FEATURES D3). A PvD's zones come from the config file, which the
 * administrator wrote; from the host: a link's routing domains (`~corp.example.com`), which only
 * the administrator or a local VPN client sets in systemd-resolved or NetworkManager; or from the
 * network: a link's search domains (DHCP, RA), an RA's DNSSL, the `dnsZones` of
 * `/.well-known/pvd`. A hostile network could otherwise pull public
 * names off a full-tunnel VPN just by pushing a search list (systemd/systemd#17678 review: "the
 * security risks of using search domains from an untrusted source").
 *
 * The rule, judged once per zone when the router is built (first that applies decides):
 * 1. a zone from the config file or a host routing domain is accepted (a split VPN's
 *    `~corp.example.com` keeps working beside a `~.` link);
 * 2. a private-use zone is accepted: home.arpa, `.internal`, `.lan`, a reverse zone inside one of
 *    the PvD's own prefixes, or the RFC 6303 reverse zone that holds one of them;
 * 3. a public suffix (the Public Suffix List, both sections and its default rule; the root) is
 *    refused: a network never claims `com.` or `co.uk.`;
 * 4. a zone the PvD's `acceptZones` names (itself or a zone above it) is accepted;
 * 5. a zone is refused when another PvD of higher priority claims every name (a full tunnel: `.`
 *    in its config `dnsZones`, or systemd-resolved's `~.` on its host link): it would capture
 *    names from it;
 * 6. otherwise it is accepted, and routes as it always did.
 *
 * Only accepted claims enter the router's zone table; `pvdns route` names the refused ones.
 *
 * @module
 */

import type { PvdConfig, ZoneClaim, ZoneSource } from "../config/types.ts";
import { privateUseName, PUBLIC_SUFFIX_TEXT, publicSuffixRule } from "../config/zone_names.ts";
import { cidr, PrefixTable, reverseNameRange, under } from "./prefixes.ts";
import { privateReversePrefix } from "./special_use.ts";

/**
 * Where zone `zone` of `p` came from: its `zoneSources` entry, else what its origin implies
 * (see {@linkcode PvdConfig.zoneSources}).
 */
export function zoneSource(p: PvdConfig, zone: string): ZoneSource {
  const given = p.zoneSources && Object.hasOwn(p.zoneSources, zone)
    ? p.zoneSources[zone]
    : undefined;
  if (given !== undefined) return given;
  if (p.origin === "config") return "config";
  const search = p.searchDomains.includes(zone);
  if (p.origin === "host") return search ? "search-domain" : "routing-domain";
  return search ? "dnssl" : "pvd-info";
}

/**
 * How `p` claims every name, if it does: `"."` among its zones from the config file, or `"~."`
 * (systemd-resolved's root routing domain on its host link). A `.` from the network never counts.
 */
export function fullTunnelClaim(p: PvdConfig): "." | "~." | undefined {
  if (p.dnsZones.includes(".") && zoneSource(p, ".") === "config") return ".";
  return p.rootRoutingDomain ? "~." : undefined;
}

/** Why `zone` is private-use for `p`, or undefined. */
function privateUse(p: PvdConfig, zone: string): string | undefined {
  const name = privateUseName(zone);
  if (name !== undefined) return `private-use name (${name})`;
  const range = reverseNameRange(zone);
  if (!range) return undefined;
  const own = new PrefixTable<string>();
  for (const c of p.prefixes) own.add(c, c.text);
  const holder = own.lookupRange(range);
  if (holder !== undefined) return `private-use: reverse zone inside its own prefix ${holder}`;
  const rfc = privateReversePrefix(zone);
  if (rfc === undefined) return undefined;
  const block = new PrefixTable<true>();
  const rfcCidr = cidr(rfc);
  block.add(rfcCidr, true);
  const mine = p.prefixes.find((c) =>
    c.prefixLength >= rfcCidr.prefixLength && block.lookup(c.address)
  );
  return mine
    ? `private-use: RFC 6303 reverse zone of ${rfc}, which holds its prefix ${mine.text}`
    : undefined;
}

/**
 * The verdict on every zone every PvD claims, in the order of `pvds` and of their `dnsZones`.
 *
 * @param pvds The PvDs in force (their order breaks priority ties, earlier first).
 *
 * @example
 * ```ts ignore
 * const claims = judgeZoneClaims(config.pvds);
 * claims.filter((c) => !c.accepted).map(describeClaim);
 * // ["zone com. claimed by network wifi (dnssl), not accepted: public suffix (Public Suffix List)"]
 * ```
 */
export function judgeZoneClaims(pvds: readonly PvdConfig[]): ZoneClaim[] {
  // Full-tunnel PvDs, strongest first: the one a refused claim would capture names from.
  const tunnels = pvds.map((p, index) => ({ p, index, claim: fullTunnelClaim(p) }))
    .filter((t) => t.claim !== undefined)
    .sort((a, b) => b.p.priority - a.p.priority || a.index - b.index);
  const claims: ZoneClaim[] = [];
  for (const p of pvds) {
    const above = tunnels.find((t) => t.p.id !== p.id && t.p.priority > p.priority);
    for (const zone of p.dnsZones) {
      const source = zoneSource(p, zone);
      const claim = { pvd: p.id, zone, source };
      if (source === "config" || source === "routing-domain") {
        const [reason, detail] = source === "config"
          ? ["config", "written in the config file"] as const
          : ["host", "a routing domain set on this host (not by the network)"] as const;
        claims.push({ ...claim, accepted: true, reason, detail });
        continue;
      }
      const privateWhy = zone === "." ? undefined : privateUse(p, zone);
      if (privateWhy !== undefined) {
        claims.push({ ...claim, accepted: true, reason: "private-use", detail: privateWhy });
        continue;
      }
      const rule = publicSuffixRule(zone);
      if (rule !== undefined) {
        const detail = PUBLIC_SUFFIX_TEXT[rule];
        claims.push({ ...claim, accepted: false, reason: "public-suffix", detail });
        continue;
      }
      const allowed = p.acceptZones?.find((a) => under(zone, a));
      if (allowed !== undefined) {
        const detail = `allowed by its acceptZones (${allowed})`;
        claims.push({ ...claim, accepted: true, reason: "accept-zones", detail });
        continue;
      }
      if (above) {
        const q = above.p;
        claims.push({
          ...claim,
          accepted: false,
          reason: "full-tunnel",
          detail:
            `would capture names from ${q.id} (claims ${above.claim}, priority ${q.priority})`,
          fullTunnel: q.id,
        });
        continue;
      }
      const detail = "no PvD of higher priority claims every name";
      claims.push({ ...claim, accepted: true, reason: "no-full-tunnel", detail });
    }
  }
  return claims.map((c) => Object.freeze(c));
}

/**
 * A claim in words, as `pvdns route` and `pvdns pvds` print it.
 *
 * @example
 * ```ts ignore
 * describeClaim(claim);
 * // "zone com. claimed by network wifi (dnssl), not accepted: public suffix (Public Suffix List)"
 * ```
 */
export function describeClaim(c: ZoneClaim): string {
  const by = c.source === "config" ? "config" : c.source === "routing-domain" ? "host" : "network";
  const verdict = c.accepted ? "accepted" : "not accepted";
  return `zone ${c.zone} claimed by ${by} ${c.pvd} (${c.source}), ${verdict}: ${c.detail}`;
}

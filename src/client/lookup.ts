/**
 * `PvdResolver.lookup()`: the addresses of a name to connect to, ordered by RFC 6724 destination
 * address selection with the source addresses of the PvD that answered, each with the source
 * address to bind to, so that the DNS answer, the source address and the route come from one PvD.
 *
 * @module
 */

import ipaddr from "ipaddr.js";
import { normalizePvdId } from "../config/values.ts";
import { type SelectedAddress, sortDestinations } from "./address_selection.ts";
import { DnsError, type DnsErrorCode } from "./errors.ts";
import type { ResolveOptions } from "./query.ts";
import type { DecodedAnswer } from "./records.ts";

/** Options of {@linkcode PvdResolver.lookup}. */
export interface LookupOptions extends ResolveOptions {
  /** 4, 6, or 0 for both. @default 0 */
  readonly family?: 0 | 4 | 6;
  /** Return every address rather than the first. @default false */
  readonly all?: boolean;
}

/** One address from {@linkcode PvdResolver.lookup}: where to connect, and what to bind to. */
export interface LookupAddress extends SelectedAddress {
  /** The PvD whose answer gave this address (undefined for a local answer such as localhost). */
  readonly pvd: string | undefined;
}

/** What {@linkcode lookupAddresses} asks of the resolver. */
export interface LookupDeps {
  /** One `getaddrinfo` query of the name for `type` (`A` or `AAAA`). */
  query(type: string): Promise<DecodedAnswer>;
  /** The source addresses of a PvD (none when it is not known). */
  sourceAddresses(pvd: string): Promise<readonly string[]>;
}

/**
 * Every address of `hostname` for `options.family`, best first (an IP literal as it is).
 *
 * @throws {DnsError} when no query gave an address: `ENOTFOUND` before any other code, then
 * the first that is not `ENODATA`, else `ENODATA`
 */
export async function lookupAddresses(
  hostname: string,
  options: LookupOptions,
  deps: LookupDeps,
): Promise<LookupAddress[]> {
  const family = options.family ?? 0;
  let found: { address: string; pvd: string | undefined }[];
  if (isIp(hostname)) {
    found = [{ address: hostname, pvd: options.pvd && normalizePvdId(options.pvd) }];
  } else {
    const types = family === 4 ? ["A"] : family === 6 ? ["AAAA"] : ["AAAA", "A"];
    const results = await Promise.allSettled(
      types.map((t) => deps.query(t)),
    );
    found = [];
    const errors: DnsError[] = [];
    for (const [i, r] of results.entries()) {
      if (r.status === "rejected") {
        if (!(r.reason instanceof DnsError)) throw r.reason;
        errors.push(r.reason);
        continue;
      }
      for (const rec of r.value.records) {
        if (rec.type === types[i]) found.push({ address: String(rec.data), pvd: r.value.pvd });
      }
    }
    if (found.length === 0) {
      const code: DnsErrorCode = errors.find((e) => e.code === "ENOTFOUND")?.code ??
        errors.find((e) => e.code !== "ENODATA")?.code ?? "ENODATA";
      throw new DnsError(code, {
        hostname,
        syscall: "getaddrinfo",
        pvd: errors[0]?.pvd ?? options.pvd,
        cause: errors.find((e) => e.code === code),
      });
    }
  }
  const pvds = new Map<string, readonly string[]>();
  for (const id of new Set(found.map((f) => f.pvd))) {
    if (id !== undefined) pvds.set(id, await deps.sourceAddresses(id));
  }
  return sortDestinations(
    found,
    (f) => f.pvd === undefined ? localSources(f.address) : pvds.get(f.pvd) ?? [],
  ).map(({ address, family, source, pvd }) => ({ address, family, source, pvd }));
}

function isIp(text: string): boolean {
  return ipaddr.IPv4.isValidFourPartDecimal(text) || ipaddr.IPv6.isValid(text);
}

/** Source candidates for an address pvdns answered itself (localhost): the loopback ones. */
function localSources(address: string): string[] {
  return address.includes(":") ? ["::1"] : ["127.0.0.1"];
}

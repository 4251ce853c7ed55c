/**
 * What kind of name a zone is, for deciding who may claim it (src/policy/zone_claims.ts): a
 * private-use name, which any network may answer for itself, or a public suffix, under which
 * unrelated parties register names and which no network may claim.
 *
 * Public suffixes come from the Public Suffix List (npm `tldts`, its copy of the list pinned with
 * the package). Both sections of the list count: the ICANN section (`com`, `co.uk`) and the
 * private section (`github.io`, `blogspot.com`), whose suffixes are just as shared by many owners.
 * The list's default rule `*` makes every unlisted top-level label a public suffix too (`corp`,
 * `lan`, `internal`), which is why private-use names are checked first.
 *
 * @module
 */

import { parse } from "tldts";

/** Which rule of the Public Suffix List makes a zone a public suffix. */
export type PublicSuffixRule = "icann" | "private" | "default" | "root";

/** Suffixes that never leave a site: a network may claim them and names under them. */
const PRIVATE_USE: readonly { readonly zone: string; readonly why: string }[] = [
  { zone: "home.arpa.", why: "home.arpa, RFC 8375" },
  { zone: "internal.", why: ".internal, reserved by ICANN for private use (2024)" },
  // Not reserved, but what home routers (OpenWrt, dnsmasq defaults) hand out.
  { zone: "lan.", why: ".lan, the usual home-router domain" },
];

/**
 * Why `zone` (lower case, trailing dot) is a private-use name, or undefined when it is not one.
 *
 * @example
 * ```ts
 * privateUseName("printer.home.arpa."); // "home.arpa, RFC 8375"
 * privateUseName("example.com."); // undefined
 * ```
 */
export function privateUseName(zone: string): string | undefined {
  for (const p of PRIVATE_USE) {
    if (zone === p.zone || zone.endsWith(`.${p.zone}`)) return p.why;
  }
  return undefined;
}

/** Parse options: the input is a bare name, and the private section counts. */
const PSL_OPTIONS = {
  allowPrivateDomains: true,
  extractHostname: false,
  validateHostname: false,
  mixedInputs: false,
} as const;

/**
 * The rule that makes `zone` (lower case, trailing dot) a public suffix, or undefined when it is
 * not one (it is a registrable name or below one). The root counts as the widest suffix of all.
 *
 * @example
 * ```ts
 * publicSuffixRule("co.uk."); // "icann"
 * publicSuffixRule("github.io."); // "private"
 * publicSuffixRule("corp."); // "default" (an unlisted top-level label)
 * publicSuffixRule("bank.co.uk."); // undefined
 * ```
 */
export function publicSuffixRule(zone: string): PublicSuffixRule | undefined {
  if (zone === ".") return "root";
  const name = zone.endsWith(".") ? zone.slice(0, -1) : zone;
  const r = parse(name, PSL_OPTIONS);
  if (r.publicSuffix !== name) return undefined;
  return r.isIcann ? "icann" : r.isPrivate ? "private" : "default";
}

/** Words for a {@linkcode PublicSuffixRule}, as explanations print them. */
export const PUBLIC_SUFFIX_TEXT: Readonly<Record<PublicSuffixRule, string>> = {
  icann: "public suffix (Public Suffix List)",
  private: "public suffix (Public Suffix List, private section)",
  default: "public suffix (an unlisted top-level name: the Public Suffix List's default rule)",
  root: "the root zone",
};

/**
 * Why `zone` may not be named in `acceptZones`, or undefined when it may: a public suffix that is
 * not a private-use name is never accepted from a network, so allowing it would be a mistake.
 */
export function acceptZoneError(zone: string): string | undefined {
  if (privateUseName(zone) !== undefined) return undefined;
  const rule = publicSuffixRule(zone);
  return rule === undefined
    ? undefined
    : `${JSON.stringify(zone)} cannot be accepted from a network: it is ${
      rule === "root" ? "" : "a "
    }${PUBLIC_SUFFIX_TEXT[rule]}`;
}

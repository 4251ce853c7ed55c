/**
 * The decoded shapes of a Router Advertisement (RFC 4861 §4.2) and of the options a PvD-aware
 * host reads, as `ra_codec.ts` returns and takes them, with the option type numbers, SvcParamKeys
 * and the closed set of reasons a message or option is rejected for.
 *
 * @module
 */

/** Why something was rejected (a closed set, for tests and logs). */
export type RejectCode =
  /** Not an RA: type ≠ 134, code ≠ 0. */
  | "not-ra"
  /** Shorter than its header, or an option/field running past its enclosing length. */
  | "truncated"
  /** An option with length 0. */
  | "zero-length"
  /** An option's length is not the one its type requires (e.g. RDNSS with an even length). */
  | "bad-length"
  /** A PvD option inside a PvD option. */
  | "nested-pvd"
  /** A name with a compression pointer (0xC0). */
  | "compressed-name"
  /** A label length over 63 (0x40–0xBF on the wire). */
  | "label-too-long"
  /** A name over 255 octets on the wire. */
  | "name-too-long"
  /** A name with characters other than letters, digits, `-`, `_`, or an empty name. */
  | "bad-name"
  /** A PvD ID that is not a host name. */
  | "bad-pvd-id"
  /** An address that may not be used (multicast, unspecified, loopback). */
  | "bad-address"
  /** A prefix length over 128. */
  | "bad-prefix"
  /** DNR: SvcParams that do not parse, are out of order, or carry an unknown mandatory key. */
  | "bad-svcparams"
  /** DNR: `ipv4hint` or `ipv6hint` present (RFC 9463 §3.1.8). */
  | "forbidden-svcparam"
  /** DNR: addresses were given but none is usable. */
  | "no-address";

/** One rejected message or option. */
export interface Rejection {
  readonly code: RejectCode;
  /** What was wrong, for a log line. */
  readonly reason: string;
  /** The option type concerned, when an option was rejected. */
  readonly optionType?: number;
  /** True when the option was embedded in a PvD option. */
  readonly inPvd?: boolean;
}

/** The result of a decode. */
export type Decoded<T> =
  | { readonly ok: true; readonly value: T }
  | (
    { readonly ok: false } & Rejection
  );

/** The 16-octet RA header (RFC 4861 §4.2); also the inner header of a PvD option with R=1. */
export interface RaHeader {
  /** 134 (in an inner header: sent, but ignored on receipt). */
  readonly type: number;
  readonly code: number;
  /** As received (an inner header's is sent as 0 and ignored). */
  readonly checksum: number;
  readonly curHopLimit: number;
  /** The flags octet as sent: M = 0x80, O = 0x40, the rest kept for round trips. */
  readonly flags: number;
  /** Seconds; 0 = not a default router. */
  readonly routerLifetime: number;
  readonly reachableTime: number;
  readonly retransTimer: number;
}

/** Prefix Information (type 3). */
export interface PrefixInformation {
  readonly kind: "pio";
  readonly prefixLength: number;
  /** The flags octet: L (on-link) = 0x80, A (autonomous) = 0x40, the rest kept. */
  readonly flags: number;
  /** Seconds; 0xffffffff = infinity. */
  readonly validLifetime: number;
  readonly preferredLifetime: number;
  readonly reserved2: number;
  /** The 128-bit prefix field, canonical text (bits past the length kept as sent). */
  readonly prefix: string;
}

/** Recursive DNS Server (type 25). */
export interface Rdnss {
  readonly kind: "rdnss";
  readonly reserved: number;
  /** Seconds; 0 = stop using; 0xffffffff = infinity. */
  readonly lifetime: number;
  /** Canonical IPv6 texts. */
  readonly servers: readonly string[];
}

/** DNS Search List (type 31). */
export interface Dnssl {
  readonly kind: "dnssl";
  readonly reserved: number;
  readonly lifetime: number;
  /** Presentation form with trailing dot, case as sent. */
  readonly domains: readonly string[];
}

/** One SvcParam (RFC 9460 §2.1), raw. */
export interface SvcParam {
  readonly key: number;
  readonly value: Uint8Array;
}

/** Encrypted DNS / DNR (type 144, RFC 9463 §6.1). */
export interface EncryptedDns {
  readonly kind: "dnr";
  /** SvcPriority: lower is preferred. */
  readonly priority: number;
  readonly lifetime: number;
  /** Authentication domain name, presentation form with trailing dot. */
  readonly adn: string;
  /** Usable addresses (multicast, loopback and unspecified ones are dropped on decode). Empty
   * in ADN-only form. */
  readonly addresses: readonly string[];
  /** SvcParams as sent, keys ascending. */
  readonly svcParams: readonly SvcParam[];
  /** Decoded `alpn` (key 1). */
  readonly alpn?: readonly string[];
  /** Decoded `port` (key 3). */
  readonly port?: number;
  /** Decoded `dohpath` (key 7), a URI template such as `/dns-query{?dns}`. */
  readonly dohpath?: string;
}

/** PvD option (type 21, RFC 8801 §3.1). */
export interface PvdOption {
  readonly kind: "pvd";
  /** H: additional information is available over HTTPS. */
  readonly h: boolean;
  /** L: the PvD owns the DHCPv4 configuration on the link. */
  readonly l: boolean;
  /** R: an RA header follows the ID (`raHeader` is set). */
  readonly r: boolean;
  /** The 9 reserved bits, as sent (ignored on receipt). */
  readonly reserved: number;
  /** 0–15: the random refetch delay after a sequence change is up to 2^(10+delay) ms. */
  readonly delay: number;
  /** Sequence number (0–65535). */
  readonly seq: number;
  /** PvD ID FQDN, presentation form with trailing dot, case as sent. */
  readonly id: string;
  /** Inner RA header (present exactly when `r`). */
  readonly raHeader?: RaHeader;
  /** Embedded options (never a PvD option). */
  readonly options: readonly NdOption[];
}

/** Any other option, kept raw. */
export interface UnknownOption {
  readonly kind: "unknown";
  readonly type: number;
  /** The option's bytes after the type and length octets. */
  readonly data: Uint8Array;
}

/** A decoded ND option. */
export type NdOption =
  | PrefixInformation
  | Rdnss
  | Dnssl
  | EncryptedDns
  | PvdOption
  | UnknownOption;

/** A decoded Router Advertisement. */
export interface RouterAdvertisement {
  readonly header: RaHeader;
  /** Options in wire order, rejected ones left out. */
  readonly options: readonly NdOption[];
  /** Options dropped for their own faults (at top level or inside the PvD option). */
  readonly rejected: readonly Rejection[];
}

/** Option type numbers. */
export const OptionType = { PIO: 3, PVD: 21, RDNSS: 25, DNSSL: 31, DNR: 144 } as const;

/** SvcParamKeys (RFC 9460 §14.3.2, RFC 9461). */
export const SvcKey = {
  MANDATORY: 0,
  ALPN: 1,
  NO_DEFAULT_ALPN: 2,
  PORT: 3,
  IPV4HINT: 4,
  ECH: 5,
  IPV6HINT: 6,
  DOHPATH: 7,
} as const;

const TYPE_OF_KIND = { pio: 3, pvd: 21, rdnss: 25, dnssl: 31, dnr: 144 } as const;

/** The option type number of a decoded option. */
export function optionType(o: NdOption): number {
  return o.kind === "unknown" ? o.type : TYPE_OF_KIND[o.kind];
}

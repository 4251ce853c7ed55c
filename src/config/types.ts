/**
 * The typed, frozen shape of a pvdns configuration, after parsing and validation.
 *
 * Everything here is normalised once at load time: names are lower case with a trailing dot,
 * addresses are canonical IP literals, server strings are split into their parts. Nothing in
 * the query path re-parses or re-normalises configuration.
 *
 * @module
 */
import type { TtlRules } from "../dns/response.ts";

/** An IP prefix, e.g. `192.0.2.0/24` or `2001:db8:1::/64`. */
export interface Cidr {
  /** The prefix as written after normalisation, e.g. `"2001:db8:1::/64"`. */
  readonly text: string;
  /** 4 or 6. */
  readonly family: 4 | 6;
  /** The network address, canonical form. */
  readonly address: string;
  /** Prefix length in bits. */
  readonly prefixLength: number;
}

/** The wire a server is reached over. `udp` means Do53: UDP first, TCP when the answer is truncated. */
export type ServerProtocol = "udp" | "tcp" | "tls" | "https";

/** One upstream DNS server of a PvD. */
export interface ServerConfig {
  /** The server as written in the config file, used in logs and metrics labels. */
  readonly text: string;
  /** How to reach it. */
  readonly protocol: ServerProtocol;
  /** Canonical IP literal (no brackets); absent only for `https://HOST/PATH` with a host name. */
  readonly address?: string;
  /** Address family of `address`, or of the PvD's Do53 servers for a host-named DoH server. */
  readonly family?: 4 | 6;
  /** Host name of an `https://HOST/PATH` server, lower case, without trailing dot. */
  readonly host?: string;
  /** Destination port: 53 for udp/tcp, 853 for tls, 443 for https unless written. */
  readonly port: number;
  /** Authentication name (certificate name, SNI, HTTP host) for tls/https. */
  readonly authName?: string;
  /** URL path for https, e.g. `/dns-query`. */
  readonly path?: string;
  /** IPv6 zone (scope) of a link-local address, e.g. `eth0` for `fe80::1%eth0`. */
  readonly zone?: string;
}

/** Where a PvD's description came from. */
export type PvdOrigin = "config" | "host" | "ra";

/**
 * Where one of a PvD's zones came from: the config file (the administrator wrote it); the host:
 * a link's routing domain (`~corp.example.com` in systemd-resolved or NetworkManager, set by the
 * administrator or a local VPN client, never by DHCP or an RA); or the network: a link's search
 * domain (DHCP, RA), an RA's DNSSL, the `dnsZones` of the PvD's `/.well-known/pvd`. Who may claim
 * what: src/policy/zone_claims.ts.
 */
export type ZoneSource = "config" | "search-domain" | "routing-domain" | "dnssl" | "pvd-info";

/**
 * Why a zone claim was accepted (`config`, `host`, `private-use`, `accept-zones`,
 * `no-full-tunnel`) or refused (`public-suffix`, `full-tunnel`); src/policy/zone_claims.ts has the
 * rule.
 */
export type ZoneClaimReason =
  | "config"
  | "host"
  | "private-use"
  | "accept-zones"
  | "no-full-tunnel"
  | "public-suffix"
  | "full-tunnel";

/** The verdict on one zone a PvD claims. */
export interface ZoneClaim {
  /** The PvD that claims the zone. */
  readonly pvd: string;
  /** The zone, lower case, trailing dot. */
  readonly zone: string;
  /** Where the claim came from. */
  readonly source: ZoneSource;
  /** Only accepted claims are routed. */
  readonly accepted: boolean;
  /** Why. */
  readonly reason: ZoneClaimReason;
  /** The reason in words, e.g. `would capture names from vpn.example.com (claims ., priority 100)`. */
  readonly detail: string;
  /** For `full-tunnel`: the PvD whose names the claim would capture. */
  readonly fullTunnel?: string;
}

/** PvD Additional Information (RFC 8801 §4), as fetched from `https://<PvD-ID>/.well-known/pvd`. */
export interface PvdAdditionalInfo {
  /** `identifier`: the PvD ID, lower case, no trailing dot. */
  readonly identifier: string;
  /** `expires`, RFC 3339. */
  readonly expires: string;
  /** `prefixes`, normalised. */
  readonly prefixes: readonly Cidr[];
  /** `dnsZones`, lower case with trailing dot (also merged into the PvD's `dnsZones`). */
  readonly dnsZones?: readonly string[];
  /** `noInternet`: the PvD must not be a default PvD. */
  readonly noInternet?: boolean;
  /** When it was fetched (ISO time). */
  readonly fetchedAt: string;
}

/** One provisioning domain (RFC 7556). */
export interface PvdConfig {
  /** PvD ID: an FQDN for an explicit PvD, or a local name for an implicit one; lower case, no trailing dot. */
  readonly id: string;
  /** True for an implicit PvD (one the host grouped itself, e.g. per interface). */
  readonly implicit: boolean;
  /** Where this description came from. */
  readonly origin: PvdOrigin;
  /** Network interface, when known. */
  readonly interface?: string;
  /** Prefixes the PvD's own addresses live in. */
  readonly prefixes: readonly Cidr[];
  /** Local addresses upstream sockets of this PvD bind to (canonical IP literals). */
  readonly sourceAddresses: readonly string[];
  /** Upstream servers, in configured order. */
  readonly servers: readonly ServerConfig[];
  /** Zones this PvD answers for: lower case, trailing dot (e.g. `"example.net."`). */
  readonly dnsZones: readonly string[];
  /** Search domains: lower case, trailing dot. Informational for the stub. */
  readonly searchDomains: readonly string[];
  /** May answer names that no PvD claims. */
  readonly default: boolean;
  /** Among default PvDs the highest priority wins; ties go to the earlier PvD in the config. */
  readonly priority: number;
  /** Extra trust anchors for this PvD's DoT/DoH servers. */
  readonly caFile?: string;
  /** Fail closed when the kernel would reach a server through another interface. */
  readonly strictRoutes: boolean;
  /** How many of the PvD's best servers each query races (never another PvD's). @default 1 */
  readonly parallel?: number;
  /** RFC 8801 additional information, for PvDs discovered from router advertisements. */
  readonly additionalInfo?: PvdAdditionalInfo;
  /**
   * Pass the upstream's AD bit on to clients. Setting it says "I trust this PvD's resolver and
   * the path to it to validate DNSSEC for me"; for every other PvD pvdns clears AD in every
   * reply (RFC 4035 §4.9.3). @default false
   */
  readonly trustAd?: boolean;
  /**
   * Zones (names or suffixes, lower case, trailing dot) this PvD's network may claim even when a
   * higher-priority PvD claims `.`. Zones written in the config file need no entry here. Never a
   * public suffix (a config error): those are refused from the network whatever this says.
   */
  readonly acceptZones?: readonly string[];
  /**
   * Where each of `dnsZones` came from. A zone not listed: `config` in a PvD of the config file;
   * in a host PvD `search-domain` when it is one of `searchDomains`, else `routing-domain`; in an
   * RA PvD `dnssl` when it is one of `searchDomains`, else `pvd-info`.
   */
  readonly zoneSources?: Readonly<Record<string, ZoneSource>>;
  /**
   * The host link this PvD was made from has systemd-resolved's `~.` routing domain: it asks for
   * every name (a full tunnel), as `.` in `dnsZones` would, but routes as resolved's DefaultRoute
   * does (as the default PvD), so `.` is not among its zones.
   */
  readonly rootRoutingDomain?: boolean;
  /**
   * The verdict on each of `dnsZones` against the other PvDs in force, for the JSON view; set by
   * the registry (src/pvd/registry.ts). The router judges the claims itself.
   */
  readonly zoneClaims?: readonly ZoneClaim[];
  /**
   * Which servers may be asked: `strict` encrypted only; `prefer` encrypted first, Do53 only
   * while every encrypted server is down; `off` all by round-trip time. Absent: `strict` when
   * every server is DoT/DoH, `prefer` when some are, `off` when none are.
   */
  readonly encryption?: EncryptionPolicy;
  /**
   * `block`: A/AAAA records in private, loopback, link-local or ULA ranges are dropped from
   * answers for names outside this PvD's own accepted zones (DNS rebinding). @default "off"
   */
  readonly rebind?: "block" | "off";
}

/** See {@linkcode PvdConfig.encryption}. */
export type EncryptionPolicy = "strict" | "prefer" | "off";

/** The trust settings a config gives a discovered PvD (`discovery.pvdOptions`). */
export interface DiscoveredPvdOptions {
  /** PvD ids this entry applies to; absent: any. */
  readonly id?: readonly string[];
  /** Interfaces this entry applies to; absent: any. */
  readonly interface?: readonly string[];
  /** See {@linkcode PvdConfig.trustAd}. */
  readonly trustAd?: boolean;
  /** See {@linkcode PvdConfig.acceptZones}. */
  readonly acceptZones?: readonly string[];
  /** See {@linkcode PvdConfig.encryption}. */
  readonly encryption?: EncryptionPolicy;
  /** See {@linkcode PvdConfig.rebind}. */
  readonly rebind?: "block" | "off";
}

/** A DNS listen address (UDP and TCP). */
export interface ListenerConfig {
  /** `ADDR:PORT` or `[V6ADDR]:PORT`, normalised. */
  readonly text: string;
  /** Canonical IP literal. */
  readonly address: string;
  /** Port number (0 asks the kernel for one; used by tests). */
  readonly port: number;
  /** When set, every query received here is routed to this PvD. */
  readonly pvd?: string;
}

/** Record data for a rule whose action is `answer`. */
export interface LocalAnswerConfig {
  /** IPv4 addresses to answer. */
  readonly A: readonly string[];
  /** IPv6 addresses to answer. */
  readonly AAAA: readonly string[];
  /** A CNAME target to answer for every type. */
  readonly CNAME?: string;
  /** TXT texts to answer. */
  readonly TXT: readonly string[];
  /** TTL of the local records, seconds. */
  readonly ttl: number;
}

/** What a matching rule does. */
export type RuleAction = "route" | "refuse" | "nxdomain" | "answer";

/** A policy rule: first match wins. */
export interface RuleConfig {
  /** Index of the rule in the config file, for explanations. */
  readonly index: number;
  /** What a query must match (every key given). */
  readonly match: {
    /** Name suffixes, lower case with trailing dot. */
    readonly suffix?: readonly string[];
    /** Client source prefixes. */
    readonly client?: readonly Cidr[];
    /** Listener texts (`ADDR:PORT`). */
    readonly listener?: readonly string[];
    /** Query type names, upper case (`"AAAA"`). */
    readonly qtype?: readonly string[];
  };
  /** What the rule does. */
  readonly action: RuleAction;
  /** Target PvD when `action` is `route`. */
  readonly pvd?: string;
  /** Local data when `action` is `answer`. */
  readonly answer?: LocalAnswerConfig;
  /** PvDs that may be asked, in order, when the target PvD fails. The only cross-PvD path. */
  readonly fallback: readonly string[];
}

/** Cache limits and TTL clamps. */
export interface CacheConfig extends TtlRules {
  /** Entries per PvD. @default 100000 */
  readonly maxEntries: number;
  /** Entries across every PvD's cache; the fullest PvD gives one up first. @default 500000 */
  readonly maxTotalEntries: number;
  /**
   * Serve-stale (RFC 8767): when every server of a PvD fails, an expired answer of that same
   * PvD is served with TTL 30 s. @default false
   */
  readonly serveStale: boolean;
  /** How long past its expiry an answer may still be served stale, seconds. @default 86400 */
  readonly staleMaxAge: number;
  /**
   * Bytes one PvD's cache may hold, counting each entry's real footprint (its wire bytes, its
   * share of a slab chunk, the entry object and its key); the least recently used go first.
   * @default 67108864 (64 MiB)
   */
  readonly maxBytes?: number;
  /** Bytes over every PvD's cache; the fullest PvD gives up entries first. @default 268435456 */
  readonly maxTotalBytes?: number;
  /** An answer larger than this (wire bytes) is served but not cached. @default min(16384, maxBytes / 64) */
  readonly maxEntryBytes?: number;
}

/** Timing of upstream queries. */
export interface UpstreamOptions {
  /** Time to wait for one server before trying the next one of the same PvD. @default 2000 */
  readonly timeoutMs: number;
  /** Total time budget of one query across the PvD's servers; then SERVFAIL. @default 4500 */
  readonly deadlineMs: number;
  /**
   * Consecutive failures after which a server is down: skipped while the PvD has another, and
   * probed in the background by one probe at a time. 0 never marks a server down. @default 3
   */
  readonly maxFails?: number;
  /**
   * 0x20 case randomisation of upstream queries: the letters of the query name get random case
   * and an answer must repeat it exactly. A server that does not preserve case is asked without
   * it. @default false
   */
  readonly caseRandomisation?: boolean;
}

/** Response-rate limiting per client prefix (UDP only; TCP proves the source address). */
export interface RateLimitConfig {
  /** Responses per second one client prefix may get. */
  readonly responsesPerSecond: number;
  /** Responses a prefix may get in one burst above the rate. @default responsesPerSecond */
  readonly burst: number;
  /** Every `slip`-th limited query gets an empty TC reply (retry over TCP); 0 = drop all. @default 2 */
  readonly slip: number;
  /** IPv4 clients are grouped by this prefix length. @default 24 */
  readonly ipv4PrefixLength: number;
  /** IPv6 clients are grouped by this prefix length. @default 56 */
  readonly ipv6PrefixLength: number;
}

/** Resource bounds (DESIGN invariant 6). Past a bound a query is dropped or refused, and counted. */
export interface LimitsConfig {
  /** Queries waiting for an upstream at once; more are dropped (UDP) or refused (TCP). @default 4096 */
  readonly maxInFlight: number;
  /**
   * Queries of one client address waiting for an upstream at once; more are dropped. Every
   * application on the host asks from 127.0.0.1, so this is a quarter of the global bound, enough
   * for the queries that pile up behind a dead server's timeout. @default 1024
   */
  readonly maxInFlightPerClient: number;
  /** Upstream exchanges at once over every PvD (each holds a socket); more get SERVFAIL. @default 1024 */
  readonly maxUpstreamQueries: number;
  /** Open client TCP connections per listener. @default 256 */
  readonly tcpConnections: number;
  /** Queries one TCP connection may have unanswered; past it pvdns stops reading it. @default 32 */
  readonly tcpPipeline: number;
  /** Idle time before a client TCP connection is closed, ms. @default 10000 */
  readonly tcpIdleMs: number;
  /** A TCP message whose first byte arrived must be complete within this, ms (slow-loris). @default 5000 */
  readonly tcpReadMs: number;
  /** Open connections per HTTP listener (control, metrics); more are closed at once. @default 64 */
  readonly httpConnections?: number;
  /** A request's head must arrive within this after the connection opens or goes idle, ms. @default 5000 */
  readonly httpHeaderMs?: number;
  /** An idle keep-alive HTTP connection is closed after this, ms. @default 30000 */
  readonly httpIdleMs?: number;
  /** Largest request body the control API reads (JSON); DoH is 65,535 bytes always. @default 65536 */
  readonly httpBodyBytes?: number;
  /**
   * The descriptor limit pvdns sets for itself (soft RLIMIT_NOFILE). Absent: what the other
   * bounds need (listeners × connections + upstream sockets + a margin), within the hard limit.
   */
  readonly openFiles?: number;
  /** Response-rate limiting per client prefix; off when absent. */
  readonly rateLimit?: RateLimitConfig;
}

/** The whole, validated configuration. Frozen deeply. */
export interface Config {
  /** DNS listeners. */
  readonly listen: readonly ListenerConfig[];
  /**
   * Client prefixes that may query; others get REFUSED. Required when a listener is not on a
   * loopback address (no open resolver by accident); absent = every client (loopback only).
   */
  readonly allow?: readonly Cidr[];
  /** The HTTP control API, when on. */
  readonly control?: { readonly listen: string; readonly token?: string };
  /** The Prometheus `/metrics` listener, when on. */
  readonly metrics?: { readonly listen: string };
  /** Extra trust anchors for DoT/DoH and `/.well-known/pvd`. */
  readonly caFile?: string;
  /** Where PvDs are discovered besides the file. */
  readonly discovery: {
    readonly ra: readonly string[];
    readonly host: boolean;
    /**
     * Trust settings for discovered PvDs: the first entry whose `id` and `interface` match a
     * discovered PvD gives it its settings. @default []
     */
    readonly pvdOptions?: readonly DiscoveredPvdOptions[];
  };
  /** The PvDs. */
  readonly pvds: readonly PvdConfig[];
  /** Policy rules, first match wins. */
  readonly rules: readonly RuleConfig[];
  /** Cache limits and TTL clamps. */
  readonly cache: CacheConfig;
  /** Timing of upstream queries. */
  readonly upstream: UpstreamOptions;
  /** Resource bounds. */
  readonly limits: LimitsConfig;
}

/**
 * The zod schemas of the config validator (`config/parse.ts`): structure, unknown keys, defaults,
 * and
 * the leaf parsers of `config/values.ts` applied to every string (re-exported from here).
 *
 * @module
 */
import { z } from "zod";
import type * as T from "./types.ts";
import {
  compact,
  DEFAULT_LISTEN,
  errorMessage,
  isFqdnId,
  MAX_TIMER_MS,
  MAX_TTL,
  parseCidr,
  parseDomainName,
  parseFilePath,
  parseInterfaceName,
  parseIp,
  parseListenAddress,
  parsePvdId,
  parseQtype,
  parseServer,
  show,
} from "./values.ts";

import { acceptZoneError } from "./zone_names.ts";

export * from "./values.ts";

// ---------------------------------------------------------------------------------------------
// zod schemas: structure, unknown keys, defaults and leaf normalisation. Checks that relate one
// part of the file to another (ids, references, families) live in config/parse.ts.

/** A string checked and converted by `parse`; its error message becomes the issue message. */
function leaf<T>(parse: (text: string) => T) {
  return z.string().transform((text, ctx): T => {
    try {
      return parse(text);
    } catch (error) {
      ctx.addIssue({ code: "custom", message: errorMessage(error), input: text });
      return z.NEVER;
    }
  });
}

/** A single value or a non-empty list of them; always a list after parsing. */
function oneOrMany<T>(parse: (text: string) => T) {
  return z.union([
    leaf(parse),
    z.array(leaf(parse)).min(1, { error: "an empty list matches nothing" }),
  ])
    .transform((v): T[] => Array.isArray(v) ? v : [v]);
}

const int = (min: number, max: number = Number.MAX_SAFE_INTEGER) =>
  z.number().int().min(min).max(max);
const listenText = (text: string) => parseListenAddress(text).text;
const address = (text: string) => parseIp(text).address;
const ipOf = (family: 4 | 6) => (text: string) => {
  const ip = parseIp(text);
  if (ip.family !== family) throw new Error(`${show(text)} is not an IPv${family} address`);
  return ip.address;
};

const listenEntry = z.union([
  leaf(parseListenAddress),
  z.strictObject({ address: leaf(parseListenAddress), pvd: leaf(parsePvdId).optional() })
    .transform(({ address, pvd }) => ({ ...address, ...(pvd === undefined ? {} : { pvd }) })),
]);

/** Fills in the family of host-named DoH servers from the PvD's first Do53 server. */
function withHostFamilies(servers: T.ServerConfig[]): T.ServerConfig[] {
  const family = servers.find((s) => s.address && (s.protocol === "udp" || s.protocol === "tcp"))
    ?.family;
  return servers.map((s) => s.address || family === undefined ? s : { ...s, family });
}

/** An `acceptZones` entry: a domain name that is not a public suffix (src/config/zone_names.ts). */
function parseAcceptZone(text: string): string {
  const zone = parseDomainName(text);
  const error = acceptZoneError(zone);
  if (error !== undefined) throw new Error(error);
  return zone;
}

/** A PvD's trust settings, in `pvds[]` and `discovery.pvdOptions[]` (config/types.ts PvdConfig). */
const trustKeys = {
  trustAd: z.boolean().optional(),
  acceptZones: z.array(leaf(parseAcceptZone)).optional(),
  encryption: z.enum(["strict", "prefer", "off"]).optional(),
  rebind: z.enum(["block", "off"]).optional(),
};

const pvd = z.strictObject({
  id: leaf(parsePvdId),
  implicit: z.boolean().optional(),
  interface: leaf(parseInterfaceName).optional(),
  prefixes: z.array(leaf(parseCidr)).default([]),
  sourceAddresses: z.array(leaf(address)).min(1, { error: "at least one address is required" }),
  servers: z.array(leaf(parseServer)).min(1, { error: "at least one server is required" }),
  dnsZones: z.array(leaf((t) => parseDomainName(t, { root: true }))).default([]),
  searchDomains: z.array(leaf((t) => parseDomainName(t))).default([]),
  default: z.boolean().optional(),
  priority: int(Number.MIN_SAFE_INTEGER).default(0),
  caFile: leaf(parseFilePath).optional(),
  strictRoutes: z.boolean().default(false),
  // Race this many of the PvD's best servers per query (never another PvD's).
  parallel: int(1, 4).optional(),
  ...trustKeys,
}).transform((p): Omit<T.PvdConfig, "origin"> =>
  compact<Omit<T.PvdConfig, "origin">>({
    ...p,
    // An FQDN id names an explicit PvD (RFC 8801); anything else is a local, implicit one.
    implicit: p.implicit ?? !isFqdnId(p.id),
    servers: withHostFamilies(p.servers),
    // A PvD that claims no zones exists to answer everything else, so it is a default PvD;
    // one that claims zones answers only those unless "default": true says otherwise.
    default: p.default ?? p.dnsZones.length === 0,
  })
);

const answer = z.strictObject({
  A: z.array(leaf(ipOf(4))).default([]),
  AAAA: z.array(leaf(ipOf(6))).default([]),
  CNAME: leaf((t) => parseDomainName(t)).optional(),
  TXT: z.array(
    z.string().refine((t) => new TextEncoder().encode(t).length <= 255, {
      error: (iss) => `${show(iss.input)} is longer than 255 bytes`,
    }),
  ).default([]),
  ttl: int(0, MAX_TTL).default(60),
}).transform((a, ctx): T.LocalAnswerConfig => {
  const others = a.A.length + a.AAAA.length + a.TXT.length;
  if (a.CNAME === undefined && others === 0) {
    ctx.addIssue({
      code: "custom",
      message: "needs at least one of A, AAAA, CNAME, TXT",
      input: a,
    });
  } else if (a.CNAME !== undefined && others > 0) {
    ctx.addIssue({
      code: "custom",
      message: "CNAME cannot be combined with other records",
      input: a,
    });
  }
  return a;
});

const rule = z.strictObject({
  match: z.strictObject({
    suffix: oneOrMany((t) => parseDomainName(t, { root: true })).optional(),
    client: oneOrMany(parseCidr).optional(),
    listener: oneOrMany(listenText).optional(),
    qtype: oneOrMany(parseQtype).optional(),
  }),
  pvd: leaf(parsePvdId).optional(),
  action: z.enum(["refuse", "nxdomain", "answer"]).optional(),
  answer: answer.optional(),
  fallback: z.array(leaf(parsePvdId)).default([]),
}).transform((r): Omit<T.RuleConfig, "index"> =>
  compact<Omit<T.RuleConfig, "index">>({ ...r, action: r.pvd === undefined ? r.action : "route" })
);

/** `unix:/ABSOLUTE/PATH` or a TCP listen address (normalised). */
function parseControlListen(text: string): string {
  if (text.startsWith("unix:")) {
    if (!text.startsWith("unix:/")) throw new Error(`${show(text)} needs an absolute socket path`);
    return text;
  }
  return listenText(text);
}

/** The schema of the whole file, before the cross-checks in config/parse.ts. */
const configSchema = z.strictObject({
  listen: z.array(listenEntry).min(1, { error: "at least one listen address is required" })
    .prefault([DEFAULT_LISTEN]),
  allow: z.array(leaf(parseCidr)).min(1, { error: "at least one client prefix is required" })
    .optional(),
  control: z.strictObject({
    listen: leaf(parseControlListen),
    token: z.string().regex(/^\S+$/, { error: "must be a non-empty string without spaces" })
      .optional(),
  }).optional(),
  metrics: z.strictObject({ listen: leaf(listenText) }).optional(),
  caFile: leaf(parseFilePath).optional(),
  discovery: z.strictObject({
    ra: z.array(leaf(parseInterfaceName)).default([]),
    host: z.boolean().default(false),
    pvdOptions: z.array(
      z.strictObject({
        id: oneOrMany(parsePvdId).optional(),
        interface: oneOrMany(parseInterfaceName).optional(),
        ...trustKeys,
      }).transform((o) => compact<T.DiscoveredPvdOptions>(o)),
    ).optional(),
  }).prefault({}),
  pvds: z.array(pvd).default([]),
  rules: z.array(rule).default([]),
  cache: z.strictObject({
    maxEntries: int(1).default(100000),
    minTtl: int(0, MAX_TTL).default(0),
    maxTtl: int(0, MAX_TTL).default(86400),
    negativeMaxTtl: int(0, MAX_TTL).default(3600),
    servfailTtl: int(0, 300).default(2),
    maxTotalEntries: int(1).default(500000),
    serveStale: z.boolean().default(false),
    staleMaxAge: int(1, MAX_TTL).default(86400),
    maxBytes: int(64 * 1024).default(64 * 1024 * 1024),
    maxTotalBytes: int(64 * 1024).default(256 * 1024 * 1024),
    maxEntryBytes: int(512, 65535).optional(), // absent: min(16 KiB, maxBytes / 64)
  }).prefault({}),
  upstream: z.strictObject({
    timeoutMs: int(10, MAX_TIMER_MS).default(2000),
    deadlineMs: int(10, MAX_TIMER_MS).default(4500),
    // Health inside a PvD (transports/README.md): consecutive failures before a server is down.
    maxFails: int(0, 1000).optional(), // absent: 3 (src/upstream/pool.ts)
    caseRandomisation: z.boolean().default(false),
  }).prefault({}),
  limits: z.strictObject({
    maxInFlight: int(1).default(4096),
    maxInFlightPerClient: int(1).default(1024),
    maxUpstreamQueries: int(1).default(1024),
    tcpConnections: int(1).default(256),
    tcpPipeline: int(1, 65535).default(32),
    tcpIdleMs: int(1, MAX_TIMER_MS).default(10000),
    tcpReadMs: int(1, MAX_TIMER_MS).default(5000),
    httpConnections: int(1, 4096).default(64),
    httpHeaderMs: int(1, MAX_TIMER_MS).default(5000),
    httpIdleMs: int(1, MAX_TIMER_MS).default(30000),
    httpBodyBytes: int(512, 16 * 1024 * 1024).default(64 * 1024),
    openFiles: int(64).optional(), // absent: what the other bounds need (src/sys/fd_limit.ts)
    rateLimit: z.strictObject({
      responsesPerSecond: int(1),
      burst: int(1).optional(),
      slip: int(0, 100).default(2),
      ipv4PrefixLength: int(8, 32).default(24),
      ipv6PrefixLength: int(16, 128).default(56),
    }).transform((r): T.RateLimitConfig => ({ ...r, burst: r.burst ?? r.responsesPerSecond }))
      .optional(),
  }).prefault({}),
});

/** What the schema yields: a {@linkcode T.Config} still without PvD `origin` and rule `index`. */
export type SchemaOutput = Omit<T.Config, "pvds" | "rules"> & {
  readonly pvds: readonly Omit<T.PvdConfig, "origin">[];
  readonly rules: readonly Omit<T.RuleConfig, "index">[];
};

/**
 * Applies the schema: structure, unknown keys, defaults and leaf normalisation.
 *
 * @param raw The parsed file.
 * @param error Per-parse zod error map for the messages zod writes itself.
 * @returns The normalised value, or the issues found.
 */
export function applySchema(
  raw: unknown,
  error: z.core.$ZodErrorMap,
): { readonly data: SchemaOutput } | { readonly issues: readonly z.core.$ZodIssue[] } {
  const result = configSchema.safeParse(raw, { error });
  return result.success ? { data: result.data } : { issues: result.error.issues };
}

/**
 * Building blocks of the config validator (`config.ts`): parsers for the small string forms
 * (IP literals, prefixes, names, servers, listen addresses) and the zod schemas that apply them
 * and normalise their values. Every parser throws a plain `Error` whose message names the value.
 *
 * @module
 */
import ipaddr from "ipaddr.js";
import { z } from "zod";
import type * as T from "./config_types.ts";

/** Query type names a rule may match (`match.qtype`). */
export const KNOWN_QTYPES: readonly string[] = Object.freeze(
  "A NS CNAME SOA PTR MX TXT AAAA SRV NAPTR DS RRSIG NSEC DNSKEY NSEC3 TLSA SVCB HTTPS CAA ANY"
    .split(" "),
);

/** The listen address used when the config has no `listen` key. */
export const DEFAULT_LISTEN = "127.0.0.53:53";

const MAX_TTL = 2 ** 31 - 1; // RFC 2181 section 8
const MAX_TIMER_MS = 2 ** 31 - 1; // the largest delay setTimeout() honours
const DEFAULT_PORTS: Record<T.ServerProtocol, number> = { udp: 53, tcp: 53, tls: 853, https: 443 };

/** Shows a config value in an error message: JSON, cut short when long. */
export function show(value: unknown): string {
  const text = value === undefined ? "undefined" : JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/** The message of a caught value. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Runs `parse`; an error about a part of `text` is prefixed with the whole `text`. */
function within<T>(text: string, parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    const message = errorMessage(error);
    throw new Error(message.startsWith(show(text)) ? message : `${show(text)}: ${message}`);
  }
}

/** An IP literal split into its canonical address, family and optional IPv6 zone. */
export interface IpLiteral {
  /** Canonical IP literal, without zone. */
  readonly address: string;
  /** 4 or 6. */
  readonly family: 4 | 6;
  /** IPv6 zone (scope), e.g. `eth0`. */
  readonly zone?: string;
}

/**
 * Parses an IP literal into canonical form (ipaddr.js `toString()`; IPv4-mapped IPv6 stays IPv6).
 * IPv4 must be four decimal parts. A zone (`fe80::1%eth0`) is accepted only with `zone: true`.
 */
export function parseIp(text: string, options: { zone?: boolean } = {}): IpLiteral {
  if (!text.includes(":")) {
    if (!ipaddr.IPv4.isValidFourPartDecimal(text)) {
      throw new Error(`${show(text)} is not an IP address`);
    }
    return { address: ipaddr.IPv4.parse(text).toString(), family: 4 };
  }
  const percent = text.indexOf("%");
  const literal = percent < 0 ? text : text.slice(0, percent);
  if (!ipaddr.IPv6.isValid(literal)) throw new Error(`${show(text)} is not an IP address`);
  const address = ipaddr.IPv6.parse(literal).toString();
  if (percent < 0) return { address, family: 6 };
  const zone = text.slice(percent + 1);
  if (!options.zone) throw new Error(`${show(text)}: a zone id is not allowed here`);
  if (!/^[\w.-]{1,15}$/.test(zone)) throw new Error(`${show(text)} has an invalid zone id`);
  return { address, family: 6, zone };
}

/**
 * Parses `ADDR/LEN`. Host bits are accepted and cleared: `192.0.2.7/24` becomes `192.0.2.0/24`,
 * the same choice as `ip route`, so that a prefix copied from `ip addr` output works as written.
 */
export function parseCidr(text: string): T.Cidr {
  const bad = () => new Error(`${show(text)} is not a CIDR prefix`);
  const match = /^([^/]+)\/(\d{1,3})$/.exec(text);
  if (!match) throw bad();
  let ip: IpLiteral;
  try {
    ip = parseIp(match[1]!);
  } catch {
    throw bad();
  }
  const prefixLength = Number(match[2]);
  if (prefixLength > (ip.family === 4 ? 32 : 128)) throw bad();
  const bytes = (ip.family === 4 ? ipaddr.IPv4 : ipaddr.IPv6).parse(ip.address).toByteArray();
  const network = bytes.map((byte, i) => {
    const bits = Math.min(8, Math.max(0, prefixLength - 8 * i));
    return byte & (0xff << (8 - bits)) & 0xff;
  });
  const address = ipaddr.fromByteArray(network).toString();
  return { text: `${address}/${prefixLength}`, family: ip.family, address, prefixLength };
}

/** Parses a domain name; returns it lower case with a trailing dot. `"."` only with `root`. */
export function parseDomainName(text: string, options: { root?: boolean } = {}): string {
  if (text === "." && options.root) return ".";
  const name = (text.endsWith(".") ? text.slice(0, -1) : text).toLowerCase();
  const ok = name.length > 0 && name.length <= 253 &&
    name.split(".").every((label) => /^[a-z0-9_-]{1,63}$/.test(label));
  if (!ok) throw new Error(`${show(text)} is not a valid domain name`);
  return `${name}.`;
}

/** A host name (TLS authentication name, DoH host): lower case, no trailing dot. */
function parseHostName(text: string): string {
  return parseDomainName(text).slice(0, -1);
}

/** Parses a PvD id: lower case, without a trailing dot; FQDNs and local names like `implicit:eth0`. */
export function parsePvdId(text: string): string {
  const id = (text.endsWith(".") ? text.slice(0, -1) : text).toLowerCase();
  if (!/^[\x21-\x7e]{1,253}$/.test(id)) throw new Error(`${show(text)} is not a valid PvD id`);
  return id;
}

/** True when a (normalised) PvD id looks like an FQDN, i.e. names an explicit PvD (RFC 8801). */
export function isFqdnId(id: string): boolean {
  try {
    return id.includes(".") && parseDomainName(id) !== "";
  } catch {
    return false;
  }
}

function parseQtype(text: string): string {
  const qtype = text.toUpperCase();
  if (!KNOWN_QTYPES.includes(qtype)) throw new Error(`${show(text)} is not a known query type`);
  return qtype;
}

function parseInterfaceName(text: string): string {
  if (!/^[^\s/:]{1,15}$/.test(text)) throw new Error(`${show(text)} is not an interface name`);
  return text;
}

function parseFilePath(text: string): string {
  if (text.length === 0 || text.includes("\0")) throw new Error(`${show(text)} is not a file path`);
  return text;
}

function parsePort(text: string, min: number): number {
  const port = /^\d{1,5}$/.test(text) ? Number(text) : NaN;
  if (!(port >= min && port <= 65535)) {
    throw new Error(`port must be ${min}-65535: current value is ${show(text)}`);
  }
  return port;
}

interface HostPort {
  readonly ip?: IpLiteral;
  readonly name?: string;
  readonly port: number;
}

/** `ADDR`, `ADDR:PORT`, `[V6]`, `[V6]:PORT`, bare V6 (no port) and, with `names`, `HOST[:PORT]`. */
function parseHostPort(
  text: string,
  defaultPort: number,
  options: { zone: boolean; names: boolean; minPort: number },
): HostPort {
  let host = text;
  let portText: string | undefined;
  const bracketed = /^\[([^\]]*)\](?::(.*))?$/.exec(text);
  if (bracketed) {
    [host, portText] = [bracketed[1]!, bracketed[2]];
    if (!host.includes(":")) throw new Error(`${show(host)} is not an IPv6 address`);
  } else if (text.split(":").length === 2) {
    [host, portText] = text.split(":") as [string, string];
  }
  const port = portText === undefined ? defaultPort : parsePort(portText, options.minPort);
  if (options.names && !host.includes(":") && !/^[\d.]+$/.test(host)) {
    return { name: parseHostName(host), port };
  }
  return { ip: parseIp(host, { zone: options.zone }), port };
}

/** A listen address: canonical `ADDR:PORT` / `[V6]:PORT` text and its parts. */
export interface ListenAddress {
  /** `ADDR:PORT` or `[V6ADDR]:PORT`. */
  readonly text: string;
  /** Canonical IP literal. */
  readonly address: string;
  /** Port number; 0 asks the kernel for one. */
  readonly port: number;
}

/**
 * Parses a listen address: `ADDR:PORT`, `[V6ADDR]:PORT`, or a bare address (port 53).
 * Port 0 is allowed (the kernel picks one). Throws an `Error` naming the value.
 *
 * @example Normalising
 * ```ts
 * parseListenAddress("[::1]:5353"); // { text: "[::1]:5353", address: "::1", port: 5353 }
 * ```
 */
export function parseListenAddress(text: string): ListenAddress {
  return within(text, () => {
    const { ip, port } = parseHostPort(text, 53, { zone: false, names: false, minPort: 0 });
    const { address, family } = ip!;
    return { text: family === 6 ? `[${address}]:${port}` : `${address}:${port}`, address, port };
  });
}

/**
 * Parses an upstream server string (see DESIGN "The config file"): `ADDR`, `ADDR:PORT`,
 * `[V6ADDR]:PORT`, `fe80::1%eth0`, `udp://`, `tcp://`, `tls://ADDR[:PORT]#AUTH-NAME`,
 * `https://ADDR[:PORT]/PATH#AUTH-NAME` or `https://HOST[:PORT]/PATH`. An https server without
 * a path uses `/dns-query`; a trailing RFC 8484 template `{?dns}` is dropped. The `family` of a
 * host-named DoH server is filled in later from its PvD. Throws an `Error` naming the value.
 *
 * @example Parsing a DoT server
 * ```ts
 * parseServer("tls://192.0.2.1#dns.example.net");
 * // { text: "tls://192.0.2.1#dns.example.net", protocol: "tls", address: "192.0.2.1",
 * //   family: 4, port: 853, authName: "dns.example.net" }
 * ```
 */
export function parseServer(text: string): T.ServerConfig {
  return within(text, () => {
    const scheme = /^([a-z][a-z0-9+.-]*):\/\/(.*)$/i.exec(text);
    const protocol = (scheme ? scheme[1]!.toLowerCase() : "udp") as T.ServerProtocol;
    if (!(protocol in DEFAULT_PORTS)) {
      throw new Error(`unknown scheme ${show(scheme![1])} (use udp, tcp, tls or https)`);
    }
    let rest = scheme ? scheme[2]! : text;
    let fragment: string | undefined;
    let path: string | undefined;
    const hash = rest.indexOf("#");
    if (hash >= 0) [rest, fragment] = [rest.slice(0, hash), rest.slice(hash + 1)];
    const slash = rest.indexOf("/");
    if (slash >= 0) [rest, path] = [rest.slice(0, slash), rest.slice(slash)];
    if (path !== undefined && protocol !== "https") {
      throw new Error(`a ${protocol} server takes no path`);
    }
    if (fragment !== undefined && (protocol === "udp" || protocol === "tcp")) {
      throw new Error(`a ${protocol} server takes no authentication name`);
    }
    const options = { zone: true, names: protocol === "https", minPort: 1 };
    const { ip, name, port } = parseHostPort(rest, DEFAULT_PORTS[protocol], options);
    const authName = fragment !== undefined ? parseHostName(fragment) : name;
    if (authName === undefined && (protocol === "tls" || protocol === "https")) {
      throw new Error(`needs an authentication name: ${protocol}://ADDR#AUTH-NAME`);
    }
    if (protocol === "https") {
      path = (path ?? "/dns-query").replace(/\{\?dns\}$/, "");
      if (!/^\/[\x21-\x7e]*$/.test(path)) throw new Error(`${show(path)} is not a URL path`);
    }
    const { address, family, zone } = ip ?? {};
    return compact<T.ServerConfig>({
      text,
      protocol,
      address,
      family,
      host: name,
      port,
      authName,
      path,
      zone,
    });
  });
}

/** Returns `object` without its `undefined` properties (so optional keys are absent, not undefined). */
export function compact<T extends object>(object: { [K in keyof T]: T[K] | undefined }): T {
  return Object.fromEntries(Object.entries(object).filter(([, v]) => v !== undefined)) as T;
}

// ---------------------------------------------------------------------------------------------
// zod schemas: structure, unknown keys, defaults and leaf normalisation. Checks that relate one
// part of the file to another (ids, references, families) live in config.ts.

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

/** The schema of the whole file, before the cross-checks in config.ts. */
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
  }).prefault({}),
  upstream: z.strictObject({
    timeoutMs: int(10, MAX_TIMER_MS).default(2000),
    deadlineMs: int(10, MAX_TIMER_MS).default(4500),
    // Health inside a PvD (transports/README.md): consecutive failures before a server is down.
    maxFails: int(0, 1000).optional(), // absent: 3 (resolver/upstream.ts)
  }).prefault({}),
  limits: z.strictObject({
    maxInFlight: int(1).default(4096),
    maxInFlightPerClient: int(1).default(1024),
    maxUpstreamQueries: int(1).default(1024),
    tcpConnections: int(1).default(256),
    tcpPipeline: int(1, 65535).default(32),
    tcpIdleMs: int(1, MAX_TIMER_MS).default(10000),
    tcpReadMs: int(1, MAX_TIMER_MS).default(5000),
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

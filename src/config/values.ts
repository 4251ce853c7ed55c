/**
 * The small string forms of the config file and their parsers: IP literals, prefixes, names, PvD
 * ids, ports, listen addresses and servers. Every parser throws a plain `Error` whose message
 * names the value; the zod schemas of `config/schema.ts` apply them.
 *
 * @module
 */
import { QUERY_TYPES } from "../dns/wire.ts";
import ipaddr from "ipaddr.js";
import type * as T from "./types.ts";

/** Query type names a rule may match (`match.qtype`). */
export const KNOWN_QTYPES: readonly string[] = QUERY_TYPES;

/** The listen address used when the config has no `listen` key. */
export const DEFAULT_LISTEN = "127.0.0.53:53";

/** The largest TTL (RFC 2181 section 8). */
export const MAX_TTL = 2 ** 31 - 1;
/** The largest delay setTimeout() honours, ms. */
export const MAX_TIMER_MS = 2 ** 31 - 1;
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

/**
 * A PvD ID as pvdns keeps it: lower case, no trailing dot (`VPN.Example.com.` → `vpn.example.com`).
 * The one normaliser: config, router advertisements, RFC 8801 documents and the control API.
 */
export function normalizePvdId(id: string): string {
  return (id.endsWith(".") ? id.slice(0, -1) : id).toLowerCase();
}

/** Parses a PvD id: lower case, without a trailing dot; FQDNs and local names like `implicit:eth0`. */
export function parsePvdId(text: string): string {
  const id = normalizePvdId(text);
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

export function parseQtype(text: string): string {
  const qtype = text.toUpperCase();
  if (!KNOWN_QTYPES.includes(qtype)) throw new Error(`${show(text)} is not a known query type`);
  return qtype;
}

export function parseInterfaceName(text: string): string {
  if (!/^[^\s/:]{1,15}$/.test(text)) throw new Error(`${show(text)} is not an interface name`);
  return text;
}

export function parseFilePath(text: string): string {
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

/** True for 127.0.0.0/8 and ::1 (IPv4-mapped loopback too): addresses no other host reaches. */
export function isLoopback(address: string): boolean {
  return ipaddr.process(address).range() === "loopback";
}

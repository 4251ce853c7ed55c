/**
 * PvD Additional Information (RFC 8801 §4): fetching `https://<PvD-ID>/.well-known/pvd` inside
 * the PvD, and validating the JSON object.
 *
 * The fetch ({@linkcode createInfoFetcher}) uses undici with one Agent per request:
 *
 * - the PvD ID (and any host a redirect names) is looked up only through the PvD's own Do53
 *   servers, from the PvD's source address ({@linkcode lookupInPvd}); never through the host;
 * - the TCP connection goes to the address found, bound to the PvD's source address
 *   (`Agent({ localAddress })`; a temporary address is preferred by the caller's ordering);
 * - TLS: SNI, HTTP Host and the certificate check all use the PvD ID; the certificate must chain
 *   to the runtime's roots or to the top-level `caFile`, and a DNS-ID must equal the PvD ID
 *   (`tls.checkServerIdentity`). There is no OCSP or other PKI traffic to route;
 * - `Accept: application/pvd+json`, no User-Agent, no cookies; redirects are followed (at most
 *   5, https only), each hop looked up and checked the same way;
 * - the answer body is read up to 64 KiB and parsed as JSON.
 *
 * Failures are sorted as RFC 8801 §4.1 needs: `tls`, `http` and `json` are the ones after which
 * the PvD ID is not fetched again during the attachment; `dns`, `network` and `no-source` are
 * retried later (nothing was learned from the server).
 *
 * @module
 */

import { normalizePvdId } from "../config/values.ts";
import tls from "node:tls";
import ipaddr from "ipaddr.js";
import { Agent } from "undici";
import type { Cidr, PvdAdditionalInfo, ServerConfig } from "../config/types.ts";
import { readBounded } from "../transports/bounded_body.ts";
import { lookupInPvd, type PvdLookup } from "./pvd_id_lookup.ts";
import { isHostName } from "./ra_wire.ts";

/** Why a fetch failed. */
export type FetchFailure = "tls" | "http" | "json" | "dns" | "network" | "no-source";

/** Failures after which RFC 8801 §4.1 forbids fetching the PvD ID again (this attachment). */
export const PERMANENT_FAILURES: ReadonlySet<FetchFailure> = new Set(["tls", "http", "json"]);

/** The result of one fetch. */
export type FetchOutcome =
  | {
    readonly ok: true;
    /** The parsed JSON (not validated yet). */
    readonly document: unknown;
    /** The URL that answered (after redirects). */
    readonly url: string;
    /** The local address the request came from. */
    readonly source: string;
  }
  | { readonly ok: false; readonly kind: FetchFailure; readonly message: string };

/** What the fetcher needs of a PvD. */
export interface InfoFetchRequest {
  /** PvD ID, lower case, no trailing dot. */
  readonly pvdId: string;
  /** Global source addresses to fetch from, best first (a temporary one first). */
  readonly sourceAddresses: readonly string[];
  /** Every source address of the PvD (for the lookup of link-local servers). */
  readonly allSourceAddresses: readonly string[];
  /** The PvD's Do53 servers (the lookup uses only these). */
  readonly servers: readonly ServerConfig[];
  readonly signal: AbortSignal;
}

/** Fetches a PvD's additional information; injectable in {@linkcode RaDiscoveryOptions}. */
export type InfoFetcher = (request: InfoFetchRequest) => Promise<FetchOutcome>;

/** Options of {@linkcode createInfoFetcher}. */
export interface InfoFetcherOptions {
  /** Extra trust anchors (PEM file), on top of the runtime's roots. */
  readonly caFile?: string;
  /** Name lookup inside the PvD. @default lookupInPvd */
  readonly lookup?: PvdLookup;
  /** Time limit of one whole fetch, redirects included. @default 10000 */
  readonly timeoutMs?: number;
  /** HTTPS port (tests only). @default 443 */
  readonly port?: number;
  readonly log?: (line: string) => void;
}

const MAX_BODY = 64 * 1024;
const MAX_REDIRECTS = 5;

class FetchError extends Error {
  constructor(readonly kind: FetchFailure, message: string) {
    super(message);
  }
}

/** Sorts an error from undici / node:tls into a failure kind. */
export function classifyError(e: unknown): FetchFailure {
  const err = e as { code?: string; message?: string; cause?: unknown };
  const text = `${err?.code ?? ""} ${err?.message ?? ""}`;
  if (/CERT|SIGNATURE|ALTNAME|ISSUER|SELF_SIGNED|certificate|TLS|SSL|handshake/i.test(text)) {
    return "tls";
  }
  if (err?.cause && err.cause !== e) {
    const inner = classifyError(err.cause);
    if (inner === "tls") return inner;
  }
  if (/^UND_ERR_(?!CONNECT)/.test(err?.code ?? "")) return "http";
  return "network";
}

function bracket(address: string): string {
  return address.includes(":") ? `[${address}]` : address;
}

/**
 * The real fetcher: undici over a connection bound to the PvD's source address, the name looked
 * up only in the PvD.
 */
export function createInfoFetcher(options: InfoFetcherOptions = {}): InfoFetcher {
  const lookup = options.lookup ?? lookupInPvd;
  let extraCa: Promise<string | undefined> | undefined;
  const ca = async () => {
    extraCa ??= options.caFile ? Deno.readTextFile(options.caFile) : Promise.resolve(undefined);
    const extra = await extraCa;
    return extra ? [...tls.rootCertificates, extra] : undefined;
  };

  return async (req) => {
    const source = req.sourceAddresses[0];
    if (!source) return { ok: false, kind: "no-source", message: "no usable source address" };
    const signal = AbortSignal.any([req.signal, AbortSignal.timeout(options.timeoutMs ?? 10_000)]);
    const lookupPvd = {
      id: req.pvdId,
      sourceAddresses: req.allSourceAddresses,
      servers: req.servers,
    };
    let url = new URL(`https://${req.pvdId}/.well-known/pvd`);
    if (options.port) url.port = String(options.port);
    try {
      const trust = await ca();
      for (let hop = 0;; hop++) {
        const host = url.hostname.replace(/^\[|\]$/g, "");
        let addresses: string[];
        if (ipaddr.isValid(host)) addresses = [host];
        else {
          try {
            addresses = await lookup(host, lookupPvd, { signal, log: options.log });
          } catch (e) {
            if (signal.aborted) throw e;
            throw new FetchError("dns", (e as Error).message);
          }
          if (addresses.length === 0) throw new FetchError("dns", `${host} has no AAAA record`);
        }
        const res = await requestAny(addresses, url, source, host, trust, signal);
        if (res.status >= 300 && res.status < 400) {
          const location = res.location;
          if (!location) throw new FetchError("http", `HTTP ${res.status} without Location`);
          if (hop >= MAX_REDIRECTS) throw new FetchError("http", "too many redirects");
          const next = new URL(location, url);
          if (next.protocol !== "https:") {
            throw new FetchError("http", `redirect to ${next.protocol} refused`);
          }
          url = next;
          continue;
        }
        if (res.status >= 400) throw new FetchError("http", `HTTP ${res.status} from ${url}`);
        if (res.status < 200) throw new FetchError("http", `HTTP ${res.status} from ${url}`);
        let document: unknown;
        try {
          document = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(res.body));
        } catch (e) {
          throw new FetchError("json", `${url}: not JSON: ${(e as Error).message}`);
        }
        return { ok: true, document, url: url.href, source };
      }
    } catch (e) {
      if (e instanceof FetchError) return { ok: false, kind: e.kind, message: e.message };
      if (signal.aborted && !req.signal.aborted) {
        return { ok: false, kind: "network", message: "timed out" };
      }
      return { ok: false, kind: classifyError(e), message: (e as Error).message };
    }
  };
}

/** One GET, trying each address in turn while the connection itself fails. */
async function requestAny(
  addresses: readonly string[],
  url: URL,
  source: string,
  host: string,
  ca: string[] | undefined,
  signal: AbortSignal,
): Promise<{ status: number; location?: string; body: Uint8Array }> {
  let last: unknown;
  for (const address of addresses) {
    try {
      return await requestOne(address, url, source, host, ca, signal);
    } catch (e) {
      if (e instanceof FetchError || signal.aborted) throw e;
      last = e;
      const kind = classifyError(e);
      if (kind !== "network") throw new FetchError(kind, `${url} via ${address}: ${msg(e)}`);
    }
  }
  throw new FetchError("network", `${url}: ${msg(last)}`);
}

function msg(e: unknown): string {
  const err = e as { code?: string; message?: string };
  return err?.code ? `${err.code}: ${err.message}` : String(err?.message ?? e);
}

async function requestOne(
  address: string,
  url: URL,
  source: string,
  host: string,
  ca: string[] | undefined,
  signal: AbortSignal,
): Promise<{ status: number; location?: string; body: Uint8Array }> {
  const named = !ipaddr.isValid(host);
  const agent = new Agent({
    localAddress: source,
    allowH2: false,
    connect: {
      ...(named ? { servername: host } : {}),
      ...(ca ? { ca } : {}),
      // The certificate must name the host asked for (the PvD ID on the first hop), whatever
      // address the connection went to.
      checkServerIdentity: (_: string, cert: tls.PeerCertificate) =>
        tls.checkServerIdentity(host, cert),
      timeout: 5000,
    },
  });
  try {
    const port = url.port || "443";
    const res = await agent.request({
      origin: `https://${bracket(address)}:${port}`,
      path: url.pathname + url.search,
      method: "GET",
      headers: { host: url.host, accept: "application/pvd+json" },
      signal,
    });
    const location = res.headers.location;
    const body = await readBounded(res.body as AsyncIterable<Uint8Array>, MAX_BODY);
    if (body === undefined) throw new FetchError("http", `${url}: body over ${MAX_BODY} octets`);
    return {
      status: res.statusCode,
      ...(typeof location === "string" ? { location } : {}),
      body,
    };
  } finally {
    await agent.destroy().catch(() => {});
  }
}

// ---------------------------------------------------------------------------------------------
// Validation (RFC 8801 §4.3, §4.4)

/** What a document is checked against. */
export interface InfoExpectation {
  /** The RA's PvD ID (any case, trailing dot or not). */
  readonly pvdId: string;
  /** The prefixes of the PvD's PIOs: each must be covered by one of the document's prefixes. */
  readonly prefixes: readonly Cidr[];
  /** Now, ms since the epoch: `expires` must be later. */
  readonly now: number;
}

/** The result of {@linkcode validateAdditionalInfo}. */
export type InfoValidation =
  | { readonly ok: true; readonly info: Omit<PvdAdditionalInfo, "fetchedAt"> }
  | { readonly ok: false; readonly reason: string };

const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

/** True when every prefix of `inner` lies inside one of `outer`. */
export function prefixesCovered(outer: readonly Cidr[], inner: readonly Cidr[]): boolean {
  return inner.every((p) => {
    const addr = ipaddr.parse(p.address);
    return outer.some((o) =>
      o.family === p.family && o.prefixLength <= p.prefixLength &&
      addr.match(ipaddr.parse(o.address), o.prefixLength)
    );
  });
}

function parseIpv6Prefix(text: unknown): Cidr | undefined {
  if (typeof text !== "string") return undefined;
  try {
    const [addr, len] = ipaddr.parseCIDR(text);
    if (addr.kind() !== "ipv6") return undefined;
    const network = ipaddr.IPv6.networkAddressFromCIDR(text).toString();
    return { text: `${network}/${len}`, family: 6, address: network, prefixLength: len };
  } catch {
    return undefined;
  }
}

/**
 * Checks a fetched document: a JSON object with a matching `identifier` (case-insensitive,
 * trailing dot ignored), an RFC 3339 `expires` in the future, and IPv6 `prefixes` covering every
 * PIO of the RA. Optional `dnsZones` (host-name-like strings; `.` is dropped: a network may not
 * claim every name) and `noInternet` (boolean) are kept; a malformed optional key is ignored
 * like an unknown one.
 */
export function validateAdditionalInfo(doc: unknown, expect: InfoExpectation): InfoValidation {
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) {
    return { ok: false, reason: "not a JSON object" };
  }
  const o = doc as Record<string, unknown>;
  if (typeof o.identifier !== "string") return { ok: false, reason: "identifier missing" };
  if (normalizePvdId(o.identifier) !== normalizePvdId(expect.pvdId)) {
    return { ok: false, reason: `identifier ${o.identifier} is not the PvD ID ${expect.pvdId}` };
  }
  if (typeof o.expires !== "string") return { ok: false, reason: "expires missing" };
  const m = RFC3339.exec(o.expires);
  const expires = Date.parse(o.expires);
  if (!m || Number.isNaN(expires)) {
    return { ok: false, reason: `expires ${o.expires} is not an RFC 3339 date` };
  }
  if (expires <= expect.now) return { ok: false, reason: `expires ${o.expires} is past` };
  if (!Array.isArray(o.prefixes)) return { ok: false, reason: "prefixes missing" };
  const prefixes: Cidr[] = [];
  for (const p of o.prefixes) {
    const c = parseIpv6Prefix(p);
    if (!c) return { ok: false, reason: `prefixes: ${JSON.stringify(p)} is not an IPv6 prefix` };
    prefixes.push(c);
  }
  if (!prefixesCovered(prefixes, expect.prefixes)) {
    return {
      ok: false,
      reason: `prefixes ${prefixes.map((p) => p.text).join(", ") || "(none)"} do not cover ` +
        `the RA's ${expect.prefixes.map((p) => p.text).join(", ")}`,
    };
  }
  let dnsZones: string[] | undefined;
  if (Array.isArray(o.dnsZones)) {
    dnsZones = [];
    for (const z of o.dnsZones) {
      if (typeof z !== "string") continue;
      const name = z.toLowerCase().replace(/\.$/, "");
      if (name === "" || !isHostName(name.replace(/_/g, "u"))) continue;
      if (!dnsZones.includes(`${name}.`)) dnsZones.push(`${name}.`);
    }
  }
  return {
    ok: true,
    info: {
      identifier: normalizePvdId(o.identifier),
      expires: o.expires,
      prefixes,
      ...(dnsZones ? { dnsZones } : {}),
      ...(typeof o.noInternet === "boolean" ? { noInternet: o.noInternet } : {}),
    },
  };
}

/**
 * {@linkcode PvdResolver}: name resolution *in a given PvD*, shaped like Node's
 * `dns.promises.Resolver`. It runs over a {@linkcode PvdBackend}: a stub running in this
 * process ({@linkcode stubBackend}), or the control API of a daemon (`connect()`, remote.ts).
 *
 * Inside the pipeline NXDOMAIN and NODATA are answers; they become errors only here, at the
 * library edge, with Node's codes (STYLE lesson 8).
 *
 * The class only composes its parts: backend.ts (what it runs over), query.ts (one query and its
 * errors), records.ts (result shapes and their decoding), lookup.ts (RFC 6724 ordering with the
 * answering PvD's sources) and watch.ts (PvD changes as an async iterator).
 *
 * @module
 */

import { normalizePvdId } from "../config/values.ts";
import type { PvdChange, PvdInfo } from "../pvd/pvd_info.ts";
import type { Stub } from "../service/stub.ts";
import { type PvdBackend, stubBackend } from "./backend.ts";
import { type LookupAddress, lookupAddresses, type LookupOptions } from "./lookup.ts";
import { type AnswerQuery, queryAnswer, type ResolveOptions } from "./query.ts";
import {
  type Answered,
  convertRecord,
  type DecodedAnswer,
  type MxRecord,
  type PvdRecords,
  RECORD_SYSCALLS,
  type RecordTypes,
  type RecordWithTtl,
  reverseName,
  type SoaRecord,
  type SrvRecord,
  stripDot,
  tagRecords,
} from "./records.ts";
import { type WatchOptions, watchPvdChanges } from "./watch.ts";

/** Options of {@linkcode PvdResolver.resolve4} and {@linkcode PvdResolver.resolve6}. */
export interface ResolveAddressOptions extends ResolveOptions {
  /** Return `{ address, ttl }` records instead of strings (Node's `ttl` option). @default false */
  readonly ttl?: boolean;
}

/** Options of the {@linkcode PvdResolver} constructor. */
export interface PvdResolverOptions {
  /** Give up on a query after this long, with `ETIMEOUT`, ms. @default 10000 */
  readonly timeout?: number;
}

/**
 * Resolves names in a chosen PvD, with the method names and result shapes of Node's
 * `dns.promises.Resolver`. Every call takes `{ pvd?, signal? }`; every result array carries the
 * `pvd` that answered and the `source` of the answer; failures are {@linkcode DnsError}s with
 * Node's codes.
 *
 * @example Resolve in one PvD, then connect from that PvD's source address
 * ```ts ignore
 * import { createStub, loadConfigFile, PvdResolver } from "./mod.ts";
 *
 * const stub = await createStub(await loadConfigFile("/etc/pvdns.jsonc"));
 * const resolver = new PvdResolver(stub);
 * const addresses = await resolver.resolve4("git.corp.example.com", { pvd: "vpn.example.com" });
 * console.log(addresses, addresses.pvd); // ["10.8.1.20"] "vpn.example.com"
 * const [best] = await resolver.lookup("git.corp.example.com", { pvd: "vpn.example.com", all: true });
 * const conn = await Deno.connect({ hostname: best!.address, port: 443 }); // bind best.source
 * ```
 */
export class PvdResolver {
  #backend: PvdBackend;
  #timeout: number;
  #cancel = new AbortController();

  /**
   * A resolver over a stub in this process, or over any {@linkcode PvdBackend}.
   *
   * @param backend a {@linkcode Stub} running in this process, or a {@linkcode PvdBackend}
   * @param options resolver options
   */
  constructor(backend: Stub | PvdBackend, options: PvdResolverOptions = {}) {
    this.#backend = "exchange" in backend ? backend : stubBackend(backend);
    this.#timeout = options.timeout ?? 10_000;
  }

  /**
   * IPv4 addresses of `hostname`.
   *
   * @example
   * ```ts ignore
   * const a = await resolver.resolve4("www.example.org", { pvd: "home.example.net" });
   * const withTtl = await resolver.resolve4("www.example.org", { ttl: true }); // [{ address, ttl }]
   * ```
   */
  resolve4(
    hostname: string,
    options: ResolveAddressOptions & { ttl: true },
  ): Promise<PvdRecords<RecordWithTtl>>;
  /** IPv4 addresses of `hostname`, as strings (see the first signature). */
  resolve4(hostname: string, options?: ResolveAddressOptions): Promise<PvdRecords<string>>;
  resolve4(
    hostname: string,
    options: ResolveAddressOptions = {},
  ): Promise<PvdRecords<string> | PvdRecords<RecordWithTtl>> {
    return this.#addresses(hostname, "A", options);
  }

  /**
   * IPv6 addresses of `hostname`.
   *
   * @example
   * ```ts ignore
   * const aaaa = await resolver.resolve6("www.example.org", { pvd: "home.example.net" });
   * ```
   */
  resolve6(
    hostname: string,
    options: ResolveAddressOptions & { ttl: true },
  ): Promise<PvdRecords<RecordWithTtl>>;
  /** IPv6 addresses of `hostname`, as strings (see the first signature). */
  resolve6(hostname: string, options?: ResolveAddressOptions): Promise<PvdRecords<string>>;
  resolve6(
    hostname: string,
    options: ResolveAddressOptions = {},
  ): Promise<PvdRecords<string> | PvdRecords<RecordWithTtl>> {
    return this.#addresses(hostname, "AAAA", options);
  }

  /**
   * TXT records: each record is the list of its strings (Node's shape).
   *
   * @example
   * ```ts ignore
   * const txt = await resolver.resolveTxt("example.org", { pvd: "home.example.net" });
   * console.log(txt.map((r) => r.join(""))); // ["v=spf1 -all"]
   * ```
   */
  resolveTxt(hostname: string, options: ResolveOptions = {}): Promise<PvdRecords<string[]>> {
    return this.resolve(hostname, "TXT", options);
  }

  /**
   * Mail exchangers.
   *
   * @example
   * ```ts ignore
   * const mx = await resolver.resolveMx("example.org"); // [{ priority: 10, exchange: "mail.example.org" }]
   * ```
   */
  resolveMx(hostname: string, options: ResolveOptions = {}): Promise<PvdRecords<MxRecord>> {
    return this.resolve(hostname, "MX", options);
  }

  /**
   * Service records.
   *
   * @example
   * ```ts ignore
   * const srv = await resolver.resolveSrv("_imaps._tcp.example.org", { pvd: "vpn.example.com" });
   * ```
   */
  resolveSrv(hostname: string, options: ResolveOptions = {}): Promise<PvdRecords<SrvRecord>> {
    return this.resolve(hostname, "SRV", options);
  }

  /**
   * The CNAME target of `hostname`.
   *
   * @example
   * ```ts ignore
   * const [target] = await resolver.resolveCname("www.example.org");
   * ```
   */
  resolveCname(hostname: string, options: ResolveOptions = {}): Promise<PvdRecords<string>> {
    return this.resolve(hostname, "CNAME", options);
  }

  /**
   * PTR records of a name (for an address, see {@linkcode PvdResolver.reverse}).
   *
   * @example
   * ```ts ignore
   * const names = await resolver.resolvePtr("1.2.0.192.in-addr.arpa");
   * ```
   */
  resolvePtr(hostname: string, options: ResolveOptions = {}): Promise<PvdRecords<string>> {
    return this.resolve(hostname, "PTR", options);
  }

  /**
   * Name servers of a zone.
   *
   * @example
   * ```ts ignore
   * const ns = await resolver.resolveNs("example.org");
   * ```
   */
  resolveNs(hostname: string, options: ResolveOptions = {}): Promise<PvdRecords<string>> {
    return this.resolve(hostname, "NS", options);
  }

  /**
   * The SOA record of a zone.
   *
   * @example
   * ```ts ignore
   * const soa = await resolver.resolveSoa("example.org"); // { nsname, hostmaster, serial, … }
   * ```
   */
  async resolveSoa(hostname: string, options: ResolveOptions = {}): Promise<SoaRecord & Answered> {
    const records = await this.resolve(hostname, "SOA", options);
    return { ...records[0]!, pvd: records.pvd, source: records.source };
  }

  /**
   * The host names of an IP address (a PTR query under in-addr.arpa or ip6.arpa). The reverse
   * zone of an address inside a PvD's prefixes goes to that PvD unless `pvd` says otherwise.
   *
   * @throws {TypeError} when `ip` is not an IP address
   * @example
   * ```ts ignore
   * const names = await resolver.reverse("10.8.0.5", { pvd: "vpn.example.com" });
   * ```
   */
  async reverse(ip: string, options: ResolveOptions = {}): Promise<PvdRecords<string>> {
    const d = await this.#query(reverseName(ip), "PTR", options, "getHostByAddr", ip);
    return tagRecords(d, "PTR", (r) => stripDot(String(r.data)));
  }

  /**
   * Records of one type, in Node's shapes (see {@linkcode RecordTypes}).
   *
   * @throws {TypeError} for a record type not in {@linkcode RecordTypes}
   * @example
   * ```ts ignore
   * const mx = await resolver.resolve("example.org", "MX", { pvd: "home.example.net" });
   * ```
   */
  resolve<K extends keyof RecordTypes = "A">(
    hostname: string,
    rrtype: K = "A" as K,
    options: ResolveOptions = {},
  ): Promise<PvdRecords<RecordTypes[K]>> {
    if (!(rrtype in RECORD_SYSCALLS)) {
      return Promise.reject(
        new TypeError(
          `rrtype "${rrtype}" is not one of ${Object.keys(RECORD_SYSCALLS).join(", ")}`,
        ),
      );
    }
    return this.#query(hostname, rrtype, options, RECORD_SYSCALLS[rrtype]!, hostname).then((d) =>
      tagRecords(d, rrtype, (r) => convertRecord(rrtype, r) as RecordTypes[K])
    );
  }

  /**
   * Addresses of `hostname` to connect to, ordered by RFC 6724 destination address selection
   * computed with the source addresses of the PvD that answered, each with the source address to
   * bind to: the DNS answer, the source address and so the route all come from one PvD.
   * Addresses of a family the PvD has no source address for come last, with `source` undefined.
   * An IP literal is returned as it is.
   *
   * @example Connect inside one PvD
   * ```ts ignore
   * const best = await resolver.lookup("git.corp.example.com", { pvd: "vpn.example.com" });
   * console.log(best); // { address: "10.8.1.20", family: 4, source: "10.8.0.2", pvd: "vpn.example.com" }
   * ```
   */
  lookup(hostname: string, options: LookupOptions & { all: true }): Promise<LookupAddress[]>;
  /** The best address of `hostname` (see the first signature). */
  lookup(hostname: string, options?: LookupOptions): Promise<LookupAddress>;
  async lookup(
    hostname: string,
    options: LookupOptions = {},
  ): Promise<LookupAddress | LookupAddress[]> {
    const sorted = await lookupAddresses(hostname, options, {
      query: (type) => this.#query(hostname, type, options, "getaddrinfo", hostname),
      sourceAddresses: async (pvd) => (await this.#backend.getPvd(pvd))?.sourceAddresses ?? [],
    });
    return options.all ? sorted : sorted[0]!;
  }

  /**
   * The PvDs in force.
   *
   * @example
   * ```ts ignore
   * for (const pvd of await resolver.listPvds()) console.log(pvd.id, pvd.origin, pvd.servers);
   * ```
   */
  listPvds(): Promise<PvdInfo[]> {
    return this.#backend.listPvds();
  }

  /**
   * One PvD by its ID (case-insensitive, trailing dot ignored), or undefined.
   *
   * @example
   * ```ts ignore
   * const vpn = await resolver.getPvd("vpn.example.com");
   * console.log(vpn?.origin, vpn?.additionalInfo?.expires);
   * ```
   */
  getPvd(id: string): Promise<PvdInfo | undefined> {
    return this.#backend.getPvd(id);
  }

  /**
   * Changes of the PvD set as they happen: an async iterator of `added` / `changed` /
   * `removed`. Leaving the loop (`break`, `return()`) or aborting `signal` unsubscribes.
   *
   * @example React to networks coming and going
   * ```ts ignore
   * for await (const { type, pvd } of resolver.watchPvds({ initial: true })) {
   *   if (type === "removed") closeConnectionsFrom(pvd.sourceAddresses);
   * }
   * ```
   */
  watchPvds(options: WatchOptions = {}): AsyncIterableIterator<PvdChange> {
    return watchPvdChanges(this.#backend, options);
  }

  /**
   * Fails every call in flight with `ECANCELLED` (Node's `resolver.cancel()`).
   *
   * @example
   * ```ts ignore
   * setTimeout(() => resolver.cancel(), 100);
   * ```
   */
  cancel(): void {
    this.#cancel.abort();
    this.#cancel = new AbortController();
  }

  /**
   * Releases the backend's connections (a remote resolver's HTTP client).
   *
   * @example
   * ```ts ignore
   * await resolver.close();
   * ```
   */
  close(): Promise<void> {
    return this.#backend.close();
  }

  async #addresses(
    hostname: string,
    type: "A" | "AAAA",
    options: ResolveAddressOptions,
  ): Promise<PvdRecords<string> | PvdRecords<RecordWithTtl>> {
    const d = await this.#query(hostname, type, options, RECORD_SYSCALLS[type]!, hostname);
    return options.ttl
      ? tagRecords(d, type, (r) => ({ address: String(r.data), ttl: r.ttl ?? 0 }))
      : tagRecords(d, type, (r) => String(r.data));
  }

  /** One query through the backend, bounded by the resolver's timeout and `cancel()`. */
  async #query(
    name: string,
    type: string,
    options: ResolveOptions,
    syscall: string,
    hostname: string,
  ): Promise<DecodedAnswer> {
    const query: AnswerQuery = {
      name,
      type,
      pvd: options.pvd === undefined ? undefined : normalizePvdId(options.pvd),
      syscall,
      hostname,
      signal: options.signal,
      cancel: this.#cancel.signal,
      timeout: this.#timeout,
    };
    return await queryAnswer(this.#backend, query);
  }
}

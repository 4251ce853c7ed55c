/**
 * {@linkcode PvdResolver}: name resolution *in a given PvD*, shaped like Node's
 * `dns.promises.Resolver`. It runs over a {@linkcode PvdBackend}: a stub running in this
 * process ({@linkcode stubBackend}), or the control API of a daemon (`connect()`, remote.ts).
 *
 * Inside the pipeline NXDOMAIN and NODATA are answers; they become errors only here, at the
 * library edge, with Node's codes (STYLE lesson 8).
 *
 * @module
 */

import ipaddr from "ipaddr.js";
import type { PvdEvent } from "../pvd/registry.ts";
import { normalizePvdId, type PvdChange, type PvdInfo, pvdInfo } from "../resolver/pvd_info.ts";
import { decodeMessage, parseQueryName, parseQueryType } from "../resolver/dns_json.ts";
import type { AnswerSource } from "../resolver/pipeline.ts";
import type { Stub } from "../resolver/stub.ts";
import { buildUpstreamQuery, Rcode } from "../resolver/wire.ts";
import { type SelectedAddress, sortDestinations } from "./address_selection.ts";
import { ControlError, DnsError, type DnsErrorCode } from "./errors.ts";

/** What one exchange through a backend gave. */
export interface Exchange {
  /** The reply; null when the query was dropped (pvdns overloaded). */
  readonly reply: Uint8Array | null;
  /** The PvD that answered; undefined when pvdns answered itself. */
  readonly pvd?: string | undefined;
  /** Where the answer came from. */
  readonly source?: AnswerSource | undefined;
  /** Set instead of a reply when the PvD asked for is not known. */
  readonly unknownPvd?: string | undefined;
}

/** Options of {@linkcode PvdBackend.exchange}. */
export interface ExchangeOptions {
  /** Ask in this PvD (explicit choice: rules do not apply). */
  readonly pvd?: string | undefined;
  /** Abort the exchange. */
  readonly signal?: AbortSignal | undefined;
}

/**
 * What a {@linkcode PvdResolver} runs over: one DNS exchange routed by pvdns, and the PvDs.
 *
 * @example A backend over a stub in this process
 * ```ts ignore
 * const resolver = new PvdResolver(stubBackend(stub));
 * ```
 */
export interface PvdBackend {
  /** Runs one wire-format query through pvdns, in `pvd` when given. */
  exchange(query: Uint8Array, options: ExchangeOptions): Promise<Exchange>;
  /** The PvDs in force. */
  listPvds(): Promise<PvdInfo[]>;
  /** One PvD, or undefined. */
  getPvd(id: string): Promise<PvdInfo | undefined>;
  /**
   * Calls `onChange` for every change of the PvD set (and first with every PvD as `added` when
   * `initial`); resolves once subscribed, with the function that unsubscribes. `onError` is
   * called when the subscription ends on its own (remote: the connection was lost).
   */
  subscribe(
    onChange: (changes: readonly PvdChange[]) => void,
    options: { readonly initial: boolean; readonly onError: (e: unknown) => void },
  ): Promise<() => void>;
  /** Releases what the backend holds (connections). */
  close(): Promise<void>;
}

/** The API client address for routing: none, so client-prefix rules and routing do not apply. */
const API_CLIENT = { address: "", port: 0, transport: "api" as const };

/**
 * A backend over a {@linkcode Stub} running in this process.
 *
 * @example
 * ```ts ignore
 * const stub = await createStub(config);
 * const resolver = new PvdResolver(stubBackend(stub));
 * ```
 */
export function stubBackend(stub: Stub): PvdBackend {
  const find = (id: string) => stub.pvds.find((p) => p.id === normalizePvdId(id));
  return {
    async exchange(query, options) {
      if (options.pvd !== undefined && !find(options.pvd)) {
        return { reply: null, unknownPvd: normalizePvdId(options.pvd) };
      }
      let answered: { pvd?: string | undefined; source?: AnswerSource } = {};
      const reply = await stub.handle(query, API_CLIENT, {
        explicitPvd: options.pvd === undefined ? undefined : normalizePvdId(options.pvd),
        onAnswer: (a) => answered = { pvd: a.pvd, source: a.source },
      });
      return { reply, ...answered };
    },
    listPvds: () => Promise.resolve(stub.pvds.map(pvdInfo)),
    getPvd(id) {
      const p = find(id);
      return Promise.resolve(p ? pvdInfo(p) : undefined);
    },
    subscribe(onChange, options) {
      const unsubscribe = stub.onPvdChange((events: readonly PvdEvent[]) =>
        onChange(events.map((e) => ({ type: e.type, pvd: pvdInfo(e.pvd) })))
      );
      if (options.initial) {
        onChange(stub.pvds.map((p) => ({ type: "added" as const, pvd: pvdInfo(p) })));
      }
      return Promise.resolve(unsubscribe);
    },
    close: () => Promise.resolve(),
  };
}

/** Options of every resolution call. */
export interface ResolveOptions {
  /** Resolve in this PvD (its ID). Absent: pvdns routes the name as it would any query. */
  readonly pvd?: string | undefined;
  /** Abort: the call fails with `ECANCELLED`. */
  readonly signal?: AbortSignal | undefined;
}

/** Options of {@linkcode PvdResolver.resolve4} and {@linkcode PvdResolver.resolve6}. */
export interface ResolveAddressOptions extends ResolveOptions {
  /** Return `{ address, ttl }` records instead of strings (Node's `ttl` option). @default false */
  readonly ttl?: boolean;
}

/** Tags every result: one query is answered by exactly one PvD. */
export interface Answered {
  /** The PvD that answered; undefined when pvdns answered itself (e.g. `localhost`). */
  readonly pvd: string | undefined;
  /** Where the answer came from: `cache`, `upstream`, `local` or `policy`. */
  readonly source: AnswerSource | undefined;
}

/** An array of records, tagged with the PvD that answered. */
export type PvdRecords<T> = T[] & Answered;

/** An address record with its TTL. */
export interface RecordWithTtl {
  /** The address. */
  readonly address: string;
  /** Seconds it may still be used. */
  readonly ttl: number;
}

/** A mail exchanger (Node's shape). */
export interface MxRecord {
  /** Lower is preferred. */
  readonly priority: number;
  /** The mail server's name, without trailing dot. */
  readonly exchange: string;
}

/** A service record (Node's shape). */
export interface SrvRecord {
  /** Lower is preferred. */
  readonly priority: number;
  /** Share among records of one priority. */
  readonly weight: number;
  /** The service's port. */
  readonly port: number;
  /** The target host, without trailing dot. */
  readonly name: string;
}

/** A zone's SOA record (Node's shape). */
export interface SoaRecord {
  /** Primary name server. */
  readonly nsname: string;
  /** Responsible mailbox, as a name. */
  readonly hostmaster: string;
  /** Zone serial number. */
  readonly serial: number;
  /** Secondary refresh interval, seconds. */
  readonly refresh: number;
  /** Secondary retry interval, seconds. */
  readonly retry: number;
  /** Secondary expiry, seconds. */
  readonly expire: number;
  /** Negative caching TTL, seconds. */
  readonly minttl: number;
}

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

/** Options of the {@linkcode PvdResolver} constructor. */
export interface PvdResolverOptions {
  /** Give up on a query after this long, with `ETIMEOUT`, ms. @default 10000 */
  readonly timeout?: number;
}

/** Options of {@linkcode PvdResolver.watchPvds}. */
export interface WatchOptions {
  /** Start with every current PvD as an `added` change. @default false */
  readonly initial?: boolean;
  /** Stop watching. */
  readonly signal?: AbortSignal;
}

/** Record types {@linkcode PvdResolver.resolve} accepts, with what each returns. */
export interface RecordTypes {
  /** IPv4 addresses. */
  A: string;
  /** IPv6 addresses. */
  AAAA: string;
  /** Canonical names. */
  CNAME: string;
  /** Mail exchangers. */
  MX: MxRecord;
  /** Name servers. */
  NS: string;
  /** Host names of a reverse name. */
  PTR: string;
  /** The zone's SOA. */
  SOA: SoaRecord;
  /** Services. */
  SRV: SrvRecord;
  /** Texts: each record is its list of strings. */
  TXT: string[];
}

const SYSCALL: Record<string, string> = {
  A: "queryA",
  AAAA: "queryAaaa",
  CNAME: "queryCname",
  MX: "queryMx",
  NS: "queryNs",
  PTR: "queryPtr",
  SOA: "querySoa",
  SRV: "querySrv",
  TXT: "queryTxt",
};

const RCODE_ERRORS: Record<number, DnsErrorCode> = {
  [Rcode.FORMERR]: "EFORMERR",
  [Rcode.SERVFAIL]: "ESERVFAIL",
  [Rcode.NXDOMAIN]: "ENOTFOUND",
  [Rcode.NOTIMP]: "ENOTIMP",
  [Rcode.REFUSED]: "EREFUSED",
};

const strip = (name: string) => name.replace(/\.$/, "");

interface Decoded {
  readonly records: { type: string; name: string; ttl?: number; data?: unknown }[];
  readonly pvd: string | undefined;
  readonly source: AnswerSource | undefined;
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
    return this.#tag(d, "PTR", (r) => strip(String(r.data)));
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
    if (!(rrtype in SYSCALL)) {
      return Promise.reject(
        new TypeError(`rrtype "${rrtype}" is not one of ${Object.keys(SYSCALL).join(", ")}`),
      );
    }
    return this.#query(hostname, rrtype, options, SYSCALL[rrtype]!, hostname).then((d) =>
      this.#tag(d, rrtype, (r) => convert(rrtype, r) as RecordTypes[K])
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
    const family = options.family ?? 0;
    let found: { address: string; pvd: string | undefined }[];
    if (isIp(hostname)) {
      found = [{ address: hostname, pvd: options.pvd && normalizePvdId(options.pvd) }];
    } else {
      const types = family === 4 ? ["A"] : family === 6 ? ["AAAA"] : ["AAAA", "A"];
      const results = await Promise.allSettled(
        types.map((t) => this.#query(hostname, t, options, "getaddrinfo", hostname)),
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
      if (id !== undefined) pvds.set(id, (await this.#backend.getPvd(id))?.sourceAddresses ?? []);
    }
    const sorted: LookupAddress[] = sortDestinations(
      found,
      (f) => f.pvd === undefined ? localSources(f.address) : pvds.get(f.pvd) ?? [],
    ).map(({ address, family, source, pvd }) => ({ address, family, source, pvd }));
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
    const queue: PvdChange[] = [];
    let failure: unknown;
    let done = false;
    let wake: (() => void) | undefined;
    const notify = () => {
      const w = wake;
      wake = undefined;
      w?.();
    };
    const subscribed = this.#backend.subscribe((changes) => {
      queue.push(...changes);
      // Bounded: a consumer that never reads keeps the newest 10000 changes.
      if (queue.length > 10_000) queue.splice(0, queue.length - 10_000);
      notify();
    }, {
      initial: options.initial ?? false,
      onError: (e) => {
        failure = e;
        notify();
      },
    });
    subscribed.catch((e) => {
      failure = e;
      notify();
    });
    const stop = async () => {
      done = true;
      options.signal?.removeEventListener("abort", onAbort);
      notify();
      (await subscribed.catch(() => undefined))?.();
    };
    const onAbort = () => void stop();
    options.signal?.addEventListener("abort", onAbort, { once: true });
    const iterator: AsyncIterableIterator<PvdChange> = {
      async next(): Promise<IteratorResult<PvdChange>> {
        for (;;) {
          if (queue.length) return { value: queue.shift()!, done: false };
          if (done) return { value: undefined, done: true };
          if (failure !== undefined) {
            await stop();
            throw failure;
          }
          await new Promise<void>((resolve) => wake = resolve);
        }
      },
      async return(): Promise<IteratorResult<PvdChange>> {
        await stop();
        queue.length = 0;
        return { value: undefined, done: true };
      },
      [Symbol.asyncIterator]() {
        return iterator;
      },
    };
    return iterator;
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
    const d = await this.#query(hostname, type, options, SYSCALL[type]!, hostname);
    return options.ttl
      ? this.#tag(d, type, (r) => ({ address: String(r.data), ttl: r.ttl ?? 0 }))
      : this.#tag(d, type, (r) => String(r.data));
  }

  #tag<T>(d: Decoded, type: string, map: (r: Decoded["records"][number]) => T): PvdRecords<T> {
    const out = d.records.filter((r) => r.type === type).map(map) as PvdRecords<T>;
    return Object.assign(out, { pvd: d.pvd, source: d.source });
  }

  /** One query: name → wire → backend → rcode check → decoded records of the answer section. */
  async #query(
    name: string,
    type: string,
    options: ResolveOptions,
    syscall: string,
    hostname: string,
  ): Promise<Decoded> {
    const pvd = options.pvd === undefined ? undefined : normalizePvdId(options.pvd);
    const fail = (
      code: DnsErrorCode,
      more: Partial<{ pvd: string; detail: string; cause: unknown }> = {},
    ) => new DnsError(code, { hostname, syscall, pvd, ...more });
    let qname: string;
    try {
      qname = parseQueryName(name);
    } catch (e) {
      throw fail("EBADNAME", { detail: (e as Error).message });
    }
    const query = buildUpstreamQuery({
      id: Math.floor(Math.random() * 0x10000),
      qname,
      qtype: parseQueryType(type),
      qclass: 1,
      do: false,
      cd: false,
    });
    const controller = new AbortController();
    const abort = () => controller.abort();
    const signals = [options.signal, this.#cancel.signal].filter((s) => s !== undefined);
    if (signals.some((s) => s.aborted)) throw fail("ECANCELLED");
    for (const s of signals) s.addEventListener("abort", abort, { once: true });
    let timer: ReturnType<typeof setTimeout> | undefined;
    let timedOut = false;
    try {
      const stopped = new Promise<never>((_, reject) => {
        controller.signal.addEventListener("abort", () =>
          reject(
            timedOut
              ? fail("ETIMEOUT", { detail: `no answer within ${this.#timeout} ms` })
              : fail("ECANCELLED"),
          ), { once: true });
        timer = setTimeout(() => {
          timedOut = true;
          controller.abort();
        }, this.#timeout);
      });
      const ex = await Promise.race([
        this.#backend.exchange(query, { pvd, signal: controller.signal }),
        stopped,
      ]);
      if (ex.unknownPvd !== undefined) {
        throw fail("EREFUSED", { detail: `"${ex.unknownPvd}" is not a known PvD` });
      }
      if (!ex.reply) {
        throw fail("ETIMEOUT", { detail: "the query was dropped (pvdns is overloaded)" });
      }
      const answeredBy = ex.pvd ?? pvd;
      const rcode = ex.reply.length >= 4 ? ex.reply[3]! & 0xf : -1;
      if (rcode !== Rcode.NOERROR) {
        throw new DnsError(RCODE_ERRORS[rcode] ?? "EBADRESP", {
          hostname,
          syscall,
          pvd: answeredBy,
        });
      }
      let records: Decoded["records"];
      try {
        records = (decodeMessage(ex.reply).answers ?? []) as Decoded["records"];
      } catch (e) {
        throw fail("EBADRESP", { cause: e });
      }
      if (!records.some((r) => r.type === type)) {
        throw new DnsError("ENODATA", { hostname, syscall, pvd: answeredBy });
      }
      return { records, pvd: answeredBy, source: ex.source };
    } catch (e) {
      if (e instanceof DnsError) throw e;
      if (e instanceof ControlError && e.status === 0) {
        throw fail("ECONNREFUSED", { detail: e.message, cause: e });
      }
      if (controller.signal.aborted) {
        throw timedOut ? fail("ETIMEOUT", { cause: e }) : fail("ECANCELLED", { cause: e });
      }
      throw e;
    } finally {
      clearTimeout(timer);
      for (const s of signals) s.removeEventListener("abort", abort);
    }
  }
}

/** Node's shape of one decoded record of `type`. */
function convert(type: string, r: Decoded["records"][number]): unknown {
  const d = r.data as Record<string, unknown>;
  switch (type) {
    case "MX":
      return { priority: d.preference, exchange: strip(String(d.exchange)) };
    case "SRV":
      return {
        priority: d.priority,
        weight: d.weight,
        port: d.port,
        name: strip(String(d.target)),
      };
    case "TXT":
      return (Array.isArray(r.data) ? r.data : [r.data]).map((b) =>
        typeof b === "string" ? b : new TextDecoder().decode(b as Uint8Array)
      );
    case "SOA":
      return {
        nsname: strip(String(d.mname)),
        hostmaster: strip(String(d.rname)),
        serial: d.serial,
        refresh: d.refresh,
        retry: d.retry,
        expire: d.expire,
        minttl: d.minimum,
      };
    default:
      return strip(String(r.data));
  }
}

function isIp(text: string): boolean {
  return ipaddr.IPv4.isValidFourPartDecimal(text) || ipaddr.IPv6.isValid(text);
}

/** Source candidates for an address pvdns answered itself (localhost): the loopback ones. */
function localSources(address: string): string[] {
  return address.includes(":") ? ["::1"] : ["127.0.0.1"];
}

/** The PTR name of an IP address. */
function reverseName(ip: string): string {
  if (ipaddr.IPv4.isValidFourPartDecimal(ip)) {
    return `${ipaddr.IPv4.parse(ip).octets.slice().reverse().join(".")}.in-addr.arpa`;
  }
  if (ipaddr.IPv6.isValid(ip)) {
    const nibbles = ipaddr.IPv6.parse(ip).toByteArray()
      .flatMap((b) => [b >> 4, b & 0xf].map((n) => n.toString(16)));
    return `${nibbles.reverse().join(".")}.ip6.arpa`;
  }
  throw new TypeError(`"${ip}" is not an IP address`);
}

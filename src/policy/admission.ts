/**
 * Who may ask, and how fast: the client allow list (no open resolver by accident) and
 * response-rate limiting per client prefix (RRL, as in BIND and Knot: over the rate a query is
 * dropped, and every `slip`-th one gets an empty truncated reply so that a real client retries
 * over TCP, which a spoofed source cannot).
 *
 * Both are decided per client address; the decision about an address is remembered in a
 * bounded map, so the hot path does one Map lookup, not a prefix match.
 *
 * @module
 */

import ipaddr from "ipaddr.js";
import type { Cidr, Config, RateLimitConfig } from "../config/types.ts";

/** What to do with a query from one client. */
export type Admission = "ok" | "refuse" | "drop" | "slip";

/** How many client addresses (and rate buckets) are remembered before the oldest go. */
const MAX_REMEMBERED = 65536;

interface ClientFacts {
  readonly allowed: boolean;
  /** The client's prefix at the rate limit's length (the bucket key). */
  readonly prefix: string;
}

interface Bucket {
  tokens: number;
  last: number;
  limited: number;
}

/**
 * Admission control for one configuration.
 *
 * @example Usage
 * ```ts ignore
 * const admission = new AdmissionControl(config);
 * admission.admit("192.0.2.7", "udp", Date.now()); // "ok" | "refuse" | "drop" | "slip"
 * ```
 */
export class AdmissionControl {
  #allow: [ipaddr.IPv4 | ipaddr.IPv6, number][] | undefined;
  #rate: RateLimitConfig | undefined;
  #facts = new Map<string, ClientFacts>();
  #buckets = new Map<string, Bucket>();

  /** Takes the allow list and the rate limit from `config` (either may be absent). */
  constructor(config: Pick<Config, "allow"> & { limits: { rateLimit?: RateLimitConfig } }) {
    this.#allow = config.allow?.map(toRange);
    this.#rate = config.limits.rateLimit;
  }

  /** True when neither an allow list nor a rate limit is configured: every query is "ok". */
  get open(): boolean {
    return this.#allow === undefined && this.#rate === undefined;
  }

  /**
   * Decides about one query. Library and control API queries (no address) are always "ok":
   * the control API has its own access rules. Rate limiting applies to UDP only.
   *
   * @param address The client's source address.
   * @param transport How the query came.
   * @param now Clock time, ms.
   */
  admit(address: string, transport: "udp" | "tcp" | "api", now: number): Admission {
    if (address === "" || transport === "api") return "ok";
    const facts = this.#factsOf(address);
    if (!facts.allowed) return "refuse";
    if (!this.#rate || transport !== "udp") return "ok";
    return this.#take(facts.prefix, now, this.#rate);
  }

  #factsOf(address: string): ClientFacts {
    let facts = this.#facts.get(address);
    if (facts) return facts;
    let ip: ipaddr.IPv4 | ipaddr.IPv6 | undefined;
    try {
      ip = ipaddr.process(address.replace(/%.*$/, ""));
    } catch {
      ip = undefined; // not an IP address: never allowed by a list
    }
    const allowed = this.#allow === undefined ||
      (ip !== undefined && this.#allow.some((range) => inRange(ip, range)));
    facts = { allowed, prefix: ip && this.#rate ? prefixOf(ip, this.#rate) : address };
    if (this.#facts.size >= MAX_REMEMBERED) this.#facts.clear();
    this.#facts.set(address, facts);
    return facts;
  }

  /** Token bucket per prefix: `responsesPerSecond` refill, `burst` capacity. */
  #take(prefix: string, now: number, rate: RateLimitConfig): Admission {
    let b = this.#buckets.get(prefix);
    if (!b) {
      if (this.#buckets.size >= MAX_REMEMBERED) dropOldest(this.#buckets);
      b = { tokens: rate.burst, last: now, limited: 0 };
      this.#buckets.set(prefix, b);
    } else {
      b.tokens = Math.min(rate.burst, b.tokens + ((now - b.last) * rate.responsesPerSecond) / 1000);
      b.last = now;
    }
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return "ok";
    }
    b.limited++;
    return rate.slip > 0 && b.limited % rate.slip === 0 ? "slip" : "drop";
  }
}

function toRange(c: Cidr): [ipaddr.IPv4 | ipaddr.IPv6, number] {
  return [ipaddr.parse(c.address), c.prefixLength];
}

function inRange(ip: ipaddr.IPv4 | ipaddr.IPv6, [net, bits]: [ipaddr.IPv4 | ipaddr.IPv6, number]) {
  return ip.kind() === net.kind() && ip.match(net, bits);
}

function prefixOf(ip: ipaddr.IPv4 | ipaddr.IPv6, rate: RateLimitConfig): string {
  const bits = ip.kind() === "ipv4" ? rate.ipv4PrefixLength : rate.ipv6PrefixLength;
  const bytes = ip.toByteArray();
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, bits - i * 8));
    bytes[i]! &= (0xff << (8 - keep)) & 0xff;
  }
  return `${bytes.join(".")}/${bits}`;
}

/** Forgets the oldest tenth of a map (insertion order): bounded memory under a spoofed flood. */
function dropOldest<K, V>(map: Map<K, V>): void {
  let n = Math.ceil(map.size / 10);
  for (const key of map.keys()) {
    if (n-- <= 0) break;
    map.delete(key);
  }
}

/**
 * Which PvD answers a query. Built once from the config; routing a query is a few map lookups.
 *
 * Order (DESIGN "Routing order"):
 * 0. special-use names answered here (localhost, invalid, local, onion, resolver.arpa), and
 *    home.arpa / RFC 6303 reverse zones unless a PvD claims them;
 * 1. an explicit PvD: an API call naming one, or a listener bound to one;
 * 2. policy rules, first match wins;
 * 3. the longest zone across PvDs: `dnsZones` whose claim is accepted (zone_claims.ts: a zone
 *    from the network may not capture names from a higher-priority full-tunnel PvD, and a public
 *    suffix never comes from the network), and reverse zones derived from `prefixes`;
 * 4. the client's source address inside a PvD's prefixes;
 * 5. the default PvD: highest priority, then earliest in the config. Never several.
 *
 * @module
 */

import type {
  Cidr,
  ListenerConfig,
  LocalAnswerConfig,
  PvdConfig,
  RuleConfig,
  ZoneClaim,
} from "../config/types.ts";
import { TYPE_NUMBERS } from "../dns/wire.ts";
import { PrefixTable, reverseNameRange, under } from "./prefixes.ts";
import { specialUse } from "./special_use.ts";
import { judgeZoneClaims } from "./zone_claims.ts";

/** The step of the routing order that made the decision. */
export type RouteStep =
  | "special"
  | "explicit"
  | "listener"
  | "rule"
  | "zone"
  | "reverse"
  | "client"
  | "default";

/** A decision: one PvD, an answer made here, or a refusal. */
export type Route =
  | {
    readonly kind: "pvd";
    readonly pvd: string;
    readonly step: RouteStep;
    /** The zone that matched, for `zone` and `reverse`. */
    readonly zone?: string;
    /** Index of the rule, for `rule`. */
    readonly rule?: number;
    /** PvDs a rule allows asking when this one fails; the only cross-PvD path. */
    readonly fallback: readonly string[];
  }
  | {
    readonly kind: "local";
    readonly step: RouteStep;
    /** `localhost` data, a rule's records, NXDOMAIN, NODATA or REFUSED. */
    readonly answer: "localhost" | "nxdomain" | "nodata" | "refuse" | LocalAnswerConfig;
    readonly reason: string;
    readonly rule?: number;
  };

/** What the router looks at. */
export interface RouteInput {
  /** Lower case, trailing dot. */
  readonly qname: string;
  /** The query type number. */
  readonly qtype: number;
  /** The client's address. */
  readonly client?: string | undefined;
  /** A PvD chosen by the caller (library or control API). */
  readonly explicitPvd?: string | undefined;
  /** The listener the query arrived on. */
  readonly listener?: ListenerConfig | undefined;
}

/** Options of {@linkcode Router}. */
export interface RouterOptions {
  readonly pvds: readonly PvdConfig[];
  readonly rules?: readonly RuleConfig[];
}

interface CompiledRule {
  readonly rule: RuleConfig;
  readonly suffixes?: readonly string[];
  readonly clients?: PrefixTable<true>;
  readonly listeners?: ReadonlySet<string>;
  readonly qtypes?: ReadonlySet<number>;
}

/**
 * Routes queries to PvDs.
 *
 * @example Usage
 * ```ts ignore
 * const router = new Router({ pvds: config.pvds, rules: config.rules });
 * router.route({ qname: "www.corp.example.", qtype: 1 }); // { kind: "pvd", pvd: "vpn.example", step: "zone", ... }
 * ```
 */
export class Router {
  #zones = new Map<string, string>();
  #ids: Set<string>;
  #defaultPvd: string | undefined;
  #prefixes = new PrefixTable<string>();
  #rules: CompiledRule[];
  #claims: readonly ZoneClaim[];
  #refused: readonly ZoneClaim[];

  /**
   * Judges every zone claim, compiles the zone (accepted claims only), prefix and rule tables and
   * picks the default PvD.
   */
  constructor(options: RouterOptions) {
    this.#ids = new Set(options.pvds.map((p) => p.id));
    this.#claims = Object.freeze(judgeZoneClaims(options.pvds));
    this.#refused = this.#claims.filter((c) => !c.accepted);
    const refused = new Set(this.#refused.map((c) => `${c.pvd} ${c.zone}`));
    // Most preferred first, so that the first PvD to claim a zone or prefix keeps it.
    const ranked = options.pvds
      .map((p, index) => ({ p, index }))
      .sort((a, b) => b.p.priority - a.p.priority || a.index - b.index)
      .map((x) => x.p);
    for (const p of ranked) {
      for (const z of p.dnsZones) {
        if (!this.#zones.has(z) && !refused.has(`${p.id} ${z}`)) this.#zones.set(z, p.id);
      }
      for (const c of p.prefixes) this.#prefixes.add(c, p.id);
    }
    this.#defaultPvd = ranked.find((p) => p.default)?.id;
    this.#rules = (options.rules ?? []).map(compileRule);
  }

  /** The verdict on every zone every PvD claims (config order). */
  get claims(): readonly ZoneClaim[] {
    return this.#claims;
  }

  /** The refused claims whose zone holds `qname`, most specific first. */
  refusedClaims(qname: string): ZoneClaim[] {
    return this.#refused.filter((c) => under(qname, c.zone))
      .sort((a, b) => labelCount(b.zone) - labelCount(a.zone));
  }

  /** The PvD that answers names no PvD claims, if any. */
  get defaultPvd(): string | undefined {
    return this.#defaultPvd;
  }

  /** Decides who answers `input`. */
  route(input: RouteInput): Route {
    const { qname } = input;
    const special = specialUse(qname);
    if (special) {
      if (
        special.kind === "localhost" || special.kind === "nxdomain" || special.kind === "nodata"
      ) {
        const answer = special.kind;
        return { kind: "local", step: "special", answer, reason: special.reason };
      }
      // home.arpa and private reverse zones: only to a PvD that claims or owns them.
      const claim = this.longestZone(qname);
      const owned = special.kind === "claimed-only"
        ? claim !== undefined && under(claim.zone, "home.arpa.")
        : this.#reverse(qname) !== undefined ||
          (claim !== undefined && /\.(in-addr|ip6)\.arpa\.$/.test(claim.zone));
      if (!owned) {
        return { kind: "local", step: "special", answer: "nxdomain", reason: special.reason };
      }
    }
    const explicit = input.explicitPvd ?? input.listener?.pvd;
    if (explicit !== undefined) {
      if (!this.#ids.has(explicit)) {
        return {
          kind: "local",
          step: "explicit",
          answer: "refuse",
          reason: `unknown PvD ${explicit}`,
        };
      }
      const step = input.explicitPvd !== undefined ? "explicit" : "listener";
      return { kind: "pvd", pvd: explicit, step, fallback: NO_FALLBACK };
    }
    for (const c of this.#rules) {
      if (!ruleMatches(c, input)) continue;
      const r = c.rule;
      if (r.action === "route") {
        return { kind: "pvd", pvd: r.pvd!, step: "rule", rule: r.index, fallback: r.fallback };
      }
      const answer = r.action === "refuse"
        ? "refuse"
        : r.action === "nxdomain"
        ? "nxdomain"
        : r.answer!;
      return { kind: "local", step: "rule", answer, reason: `rules[${r.index}]`, rule: r.index };
    }
    const zone = this.longestZone(qname);
    const reverse = this.#reverse(qname);
    // A reverse zone derived from a prefix is as specific as the labels its prefix spans.
    if (reverse && (!zone || reverse.labels >= labelCount(zone.zone))) {
      return {
        kind: "pvd",
        pvd: reverse.pvd,
        step: "reverse",
        zone: reverse.zone,
        fallback: NO_FALLBACK,
      };
    }
    if (zone) {
      return { kind: "pvd", pvd: zone.pvd, step: "zone", zone: zone.zone, fallback: NO_FALLBACK };
    }
    const byClient = input.client ? this.#prefixes.lookup(input.client) : undefined;
    if (byClient) return { kind: "pvd", pvd: byClient, step: "client", fallback: NO_FALLBACK };
    if (this.#defaultPvd) {
      return { kind: "pvd", pvd: this.#defaultPvd, step: "default", fallback: NO_FALLBACK };
    }
    return {
      kind: "local",
      step: "default",
      answer: "refuse",
      reason: "no PvD claims this name and no PvD is a default",
    };
  }

  /** The most specific accepted `dnsZones` entry containing `qname`, and its PvD. */
  longestZone(qname: string): { zone: string; pvd: string } | undefined {
    if (this.#zones.size === 0) return undefined;
    let name = qname;
    for (;;) {
      const pvd = this.#zones.get(name);
      if (pvd !== undefined) return { zone: name, pvd };
      if (name === ".") return undefined;
      const dot = name.indexOf(".");
      name = dot === name.length - 1 ? "." : name.slice(dot + 1);
    }
  }

  #reverse(qname: string): { pvd: string; zone: string; labels: number } | undefined {
    if (this.#prefixes.size === 0 || !qname.endsWith(".arpa.")) return undefined;
    const range = reverseNameRange(qname);
    if (!range) return undefined;
    const m = this.#prefixes.match(range);
    if (!m) return undefined;
    const unit = range.family === 4 ? 8 : 4;
    const labels = Math.floor(m.length / unit);
    const suffix = range.family === 4 ? "in-addr.arpa." : "ip6.arpa.";
    const zone = qname.split(".").slice(-(labels + 3)).join(".") || suffix;
    return { pvd: m.value, zone, labels: labels + 2 };
  }
}

function labelCount(zone: string): number {
  return zone === "." ? 0 : zone.split(".").length - 1;
}

function compileRule(rule: RuleConfig): CompiledRule {
  const m = rule.match;
  let clients: PrefixTable<true> | undefined;
  if (m.client) {
    clients = new PrefixTable<true>();
    for (const c of m.client as readonly Cidr[]) clients.add(c, true);
  }
  return {
    rule,
    ...(m.suffix ? { suffixes: m.suffix } : {}),
    ...(clients ? { clients } : {}),
    ...(m.listener ? { listeners: new Set(m.listener) } : {}),
    ...(m.qtype ? { qtypes: new Set(m.qtype.map((t) => TYPE_NUMBERS[t] ?? -1)) } : {}),
  };
}

function ruleMatches(c: CompiledRule, input: RouteInput): boolean {
  if (c.suffixes && !underAny(input.qname, c.suffixes)) return false;
  if (c.qtypes && !c.qtypes.has(input.qtype)) return false;
  if (c.listeners && !(input.listener && c.listeners.has(input.listener.text))) return false;
  if (c.clients && !(input.client && c.clients.lookup(input.client))) return false;
  return true;
}

function underAny(qname: string, zones: readonly string[]): boolean {
  for (const zone of zones) if (under(qname, zone)) return true;
  return false;
}

/** The fallback list of every route without one (shared: a route is made for every query). */
const NO_FALLBACK: readonly string[] = Object.freeze([]);

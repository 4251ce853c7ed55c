/**
 * The PvDs learned from Router Advertisements, with every lifetime: a pure table that is told the
 * time, so that tests drive it with a fake clock.
 *
 * Association (RFC 8801 §3.2–§3.4): everything an RA carries — its router lifetime, PIOs, RDNSS,
 * DNSSL and DNR options, inside or outside its PvD option — belongs to the explicit PvD of its
 * first PvD option (keyed by the PvD ID, lower case, no trailing dot), or else to the implicit PvD
 * keyed by (interface, the RA's link-local source). An inner RA header (R=1) replaces the outer
 * one. A prefix, server or search domain belongs to the PvD of the last RA that carried it, so an
 * RA for PvD B takes it away from PvD A on the same interface (§3.4).
 *
 * Lifetimes (RFC 4861 §6.3.4, RFC 8106 §6, RFC 9463 §6.1): each element has its own expiry,
 * refreshed whenever an RA carries it again; a lifetime of 0 removes it at once, 0xffffffff never
 * expires. The router lifetime is kept per router: the PvD may be a default while one of its
 * routers' lifetimes runs. A PvD with no router lifetime running and no element left is removed.
 *
 * @module
 */

import { normalizePvdId } from "../config/values.ts";
import ipaddr from "ipaddr.js";
import type { Cidr } from "../config/types.ts";
import type { EncryptedDns, NdOption, RouterAdvertisement } from "./ra_types.ts";

/** An infinite lifetime (0xffffffff seconds). */
export const INFINITE = 0xffffffff;
/** At most this many PvDs per interface (a flood of forged RAs cannot grow the table). */
export const MAX_PVDS_PER_INTERFACE = 32;
/** At most this many prefixes, servers, search domains or DNR resolvers per PvD. */
export const MAX_ELEMENTS = 32;

/** The PvD option fields that matter after decoding. */
export interface PvdFlags {
  readonly h: boolean;
  readonly l: boolean;
  readonly delay: number;
  readonly seq: number;
}

/** One DNR resolver: an ADN at one address. */
export interface DnrEntry {
  readonly option: EncryptedDns;
  readonly address: string;
  expiresAt: number;
}

/** One PvD learned from RAs. Mutable inside the table; read it, do not change it. */
export interface RaPvd {
  /** `pvd.example.com` for an explicit PvD, `ra:IFACE:ROUTER` for an implicit one. */
  readonly id: string;
  readonly implicit: boolean;
  readonly interface: string;
  /** Router link-local address → when its router lifetime ends (ms). */
  readonly routers: Map<string, number>;
  /** Prefix text → prefix and expiry (ms). */
  readonly prefixes: Map<string, { cidr: Cidr; expiresAt: number }>;
  /** RDNSS address (`fe80::1%eth0` for a link-local one) → expiry. */
  readonly rdnss: Map<string, number>;
  /** Search domain (lower case, trailing dot) → expiry. */
  readonly dnssl: Map<string, number>;
  /** `ADN|address` → DNR resolver. */
  readonly dnr: Map<string, DnrEntry>;
  /** The PvD option of the last RA (explicit PvDs only). */
  flags?: PvdFlags;
}

/** What {@linkcode RaPvdTable.apply} did. */
export type ApplyResult =
  | { readonly applied: true; readonly id: string }
  | { readonly applied: false; readonly reason: string };

function expiry(now: number, seconds: number): number {
  return seconds === INFINITE ? Infinity : now + seconds * 1000;
}

/** The prefix of a PIO with the bits past its length cleared, or undefined for a link-local,
 * multicast or zero-length prefix (never a PvD's own addresses). */
export function pioCidr(prefix: string, length: number): Cidr | undefined {
  const bytes = ipaddr.IPv6.parse(prefix).toByteArray();
  for (let bit = length; bit < 128; bit++) bytes[bit >> 3]! &= ~(0x80 >> (bit & 7));
  if (length === 0 || bytes[0] === 0xff || (bytes[0] === 0xfe && (bytes[1]! & 0xc0) === 0x80)) {
    return undefined;
  }
  const address = ipaddr.fromByteArray(bytes).toString();
  return { text: `${address}/${length}`, family: 6, address, prefixLength: length };
}

/** True when `key` is already in `m` or `m` has room for one more element. */
function room(m: Map<string, unknown>, key: string): boolean {
  return m.has(key) || m.size < MAX_ELEMENTS;
}

function isLinkLocal(address: string): boolean {
  return /^fe[89ab]/i.test(address);
}

/** The RA-learned PvDs of every interface, in the order they were first seen. */
export class RaPvdTable {
  #pvds = new Map<string, RaPvd>();

  /** Every PvD, in the order first seen. */
  get pvds(): readonly RaPvd[] {
    return [...this.#pvds.values()];
  }

  /** The PvD with this id. */
  get(id: string): RaPvd | undefined {
    return this.#pvds.get(id);
  }

  /**
   * Applies one RA received on `iface` from link-local `router` at time `now` (ms).
   * An RA for an explicit PvD already learned on another interface is not applied.
   */
  apply(iface: string, router: string, ra: RouterAdvertisement, now: number): ApplyResult {
    const pvdOption = ra.options.find((o) => o.kind === "pvd");
    const id = pvdOption ? normalizePvdId(pvdOption.id) : `ra:${iface}:${router}`;
    let pvd = this.#pvds.get(id);
    if (pvd && pvd.interface !== iface) {
      return {
        applied: false,
        reason: `PvD ${id} is already known on ${pvd.interface}; its RA on ${iface} is ignored`,
      };
    }
    if (!pvd) {
      if (this.pvds.filter((p) => p.interface === iface).length >= MAX_PVDS_PER_INTERFACE) {
        return {
          applied: false,
          reason: `${iface} already has ${MAX_PVDS_PER_INTERFACE} PvDs; PvD ${id} is ignored`,
        };
      }
      pvd = {
        id,
        implicit: !pvdOption,
        interface: iface,
        routers: new Map(),
        prefixes: new Map(),
        rdnss: new Map(),
        dnssl: new Map(),
        dnr: new Map(),
      };
      this.#pvds.set(id, pvd);
    }
    const header = pvdOption?.raHeader ?? ra.header;
    if (header.routerLifetime === 0) pvd.routers.delete(router);
    else pvd.routers.set(router, now + header.routerLifetime * 1000);
    if (pvdOption) {
      const { h, l, delay, seq } = pvdOption;
      pvd.flags = { h, l, delay, seq };
    }
    const options: NdOption[] = [
      ...ra.options.filter((o) => o.kind !== "pvd"),
      ...(pvdOption?.options ?? []),
    ];
    for (const o of options) this.#applyOption(pvd, o, now);
    this.#prune(pvd);
    return { applied: true, id };
  }

  #applyOption(pvd: RaPvd, o: NdOption, now: number): void {
    const iface = pvd.interface;
    switch (o.kind) {
      case "pio": {
        const cidr = pioCidr(o.prefix, o.prefixLength);
        if (!cidr) return;
        this.#takeFromOthers(pvd, (p) => p.prefixes.delete(cidr.text));
        if (o.validLifetime === 0) pvd.prefixes.delete(cidr.text);
        else if (room(pvd.prefixes, cidr.text)) {
          pvd.prefixes.set(cidr.text, { cidr, expiresAt: expiry(now, o.validLifetime) });
        }
        return;
      }
      case "rdnss":
        for (const s of o.servers) {
          const key = isLinkLocal(s) ? `${s}%${iface}` : s;
          this.#takeFromOthers(pvd, (p) => p.rdnss.delete(key));
          if (o.lifetime === 0) pvd.rdnss.delete(key);
          else if (room(pvd.rdnss, key)) pvd.rdnss.set(key, expiry(now, o.lifetime));
        }
        return;
      case "dnssl":
        for (const d of o.domains) {
          const key = d.toLowerCase();
          this.#takeFromOthers(pvd, (p) => p.dnssl.delete(key));
          if (o.lifetime === 0) pvd.dnssl.delete(key);
          else if (room(pvd.dnssl, key)) pvd.dnssl.set(key, expiry(now, o.lifetime));
        }
        return;
      case "dnr":
        for (const address of o.addresses) {
          const key = `${o.adn.toLowerCase()}|${address}`;
          this.#takeFromOthers(pvd, (p) => p.dnr.delete(key));
          if (o.lifetime === 0) pvd.dnr.delete(key);
          else if (room(pvd.dnr, key)) {
            pvd.dnr.set(key, { option: o, address, expiresAt: expiry(now, o.lifetime) });
          }
        }
        return;
      default:
        return;
    }
  }

  /** Removes an element from the other PvDs of the same interface (it moves to `pvd`). */
  #takeFromOthers(pvd: RaPvd, take: (other: RaPvd) => void): void {
    for (const other of this.#pvds.values()) {
      if (other !== pvd && other.interface === pvd.interface) take(other);
    }
  }

  /** Removes `pvd` when nothing of it is left; also prunes the others emptied by moves. */
  #prune(_pvd?: RaPvd): void {
    for (const [id, p] of this.#pvds) {
      if (
        p.routers.size === 0 && p.prefixes.size === 0 && p.rdnss.size === 0 &&
        p.dnssl.size === 0 && p.dnr.size === 0
      ) {
        this.#pvds.delete(id);
      }
    }
  }

  /** Removes everything whose lifetime ended at or before `now`; true when anything changed. */
  expire(now: number): boolean {
    let changed = false;
    const sweep = <V>(m: Map<string, V>, at: (v: V) => number) => {
      for (const [k, v] of m) {
        if (at(v) <= now) {
          m.delete(k);
          changed = true;
        }
      }
    };
    for (const p of this.#pvds.values()) {
      sweep(p.routers, (t) => t);
      sweep(p.prefixes, (e) => e.expiresAt);
      sweep(p.rdnss, (t) => t);
      sweep(p.dnssl, (t) => t);
      sweep(p.dnr, (e) => e.expiresAt);
    }
    const before = this.#pvds.size;
    this.#prune();
    return changed || this.#pvds.size !== before;
  }

  /** The earliest time (ms) something expires, or undefined. */
  nextExpiry(): number | undefined {
    let next = Infinity;
    for (const p of this.#pvds.values()) {
      for (const t of p.routers.values()) next = Math.min(next, t);
      for (const e of p.prefixes.values()) next = Math.min(next, e.expiresAt);
      for (const t of p.rdnss.values()) next = Math.min(next, t);
      for (const t of p.dnssl.values()) next = Math.min(next, t);
      for (const e of p.dnr.values()) next = Math.min(next, e.expiresAt);
    }
    return next === Infinity ? undefined : next;
  }

  /** Forgets every PvD of `iface` (the interface went away); true when there were some. */
  dropInterface(iface: string): boolean {
    let changed = false;
    for (const [id, p] of this.#pvds) {
      if (p.interface === iface) {
        this.#pvds.delete(id);
        changed = true;
      }
    }
    return changed;
  }
}

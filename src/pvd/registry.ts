/**
 * The live registry of PvDs: the config file's, the host's (interfaces and resolver
 * configuration) and those learned from router advertisements, merged into the one set the
 * resolver runs with. A PvD id named in the config file wins over a discovered PvD of the same
 * id; between host and RA discovery, RA wins (it names the PvD explicitly). Each PvD of the merged
 * set carries the verdict on its zone claims against the others (`zoneClaims`, for the JSON view).
 *
 * @module
 */

import type { Config, DiscoveredPvdOptions, PvdConfig, PvdOrigin } from "../config/types.ts";
import { judgeZoneClaims } from "../policy/zone_claims.ts";

/**
 * One change of the merged PvD set: the one shape of "a PvD changed". The stub tells its
 * `onPvdChange` listeners with the PvD's config; the library's `watchPvds()` yields the same
 * shape with the PvD's application view ({@linkcode PvdChange} in `pvd/pvd_info.ts`).
 */
export interface PvdEvent<P = PvdConfig> {
  /** `added`, `changed` (its cache was emptied) or `removed`. */
  readonly type: "added" | "changed" | "removed";
  /** The PvD after the change (before it, for `removed`). */
  readonly pvd: P;
}

/**
 * Keeps each origin's PvDs and merges them with the config.
 *
 * @example Usage
 * ```ts ignore
 * const registry = new PvdRegistry(config);
 * registry.setDiscovered("ra", [discovered]);
 * registry.effective().pvds; // config PvDs, then discovered ones
 * ```
 */
export class PvdRegistry {
  #config: Config;
  #discovered = new Map<Exclude<PvdOrigin, "config">, readonly PvdConfig[]>();

  /**
   * Starts from `config`. When host discovery is on, the config's host-origin PvDs (the embedded
   * default's) are the first host discovery result, and later results replace them.
   */
  constructor(config: Config) {
    this.#config = config;
    if (config.discovery.host) {
      this.#discovered.set("host", config.pvds.filter((p) => p.origin === "host"));
    }
  }

  /** Replaces the config (reload); discovered PvDs are kept. */
  setConfig(config: Config): void {
    this.#config = config;
  }

  /** Replaces every PvD of one discovery origin. */
  setDiscovered(origin: Exclude<PvdOrigin, "config">, pvds: readonly PvdConfig[]): void {
    this.#discovered.set(origin, pvds);
  }

  /** The config with the merged PvD list, frozen. */
  effective(): Config {
    const fromConfig = this.#config.discovery.host
      ? this.#config.pvds.filter((p) => p.origin !== "host")
      : this.#config.pvds;
    const seen = new Set(fromConfig.map((p) => p.id));
    const merged = [...fromConfig];
    for (const origin of ["ra", "host"] as const) {
      for (const p of this.#discovered.get(origin) ?? []) {
        if (seen.has(p.id)) continue;
        seen.add(p.id);
        merged.push(withOptions(usable(p), this.#config.discovery.pvdOptions));
      }
    }
    const claims = judgeZoneClaims(merged);
    const judged = merged.map((p) =>
      Object.freeze({ ...p, zoneClaims: Object.freeze(claims.filter((c) => c.pvd === p.id)) })
    );
    return Object.freeze({ ...this.#config, pvds: Object.freeze(judged) });
  }
}

/**
 * A discovered PvD with the trust settings of the first `discovery.pvdOptions` entry that
 * matches its id and interface (the network never sets these itself: only the config does).
 */
function withOptions(
  p: PvdConfig,
  options: readonly DiscoveredPvdOptions[] | undefined,
): PvdConfig {
  const o = options?.find((o) =>
    (o.id === undefined || o.id.includes(p.id)) &&
    (o.interface === undefined || (p.interface !== undefined && o.interface.includes(p.interface)))
  );
  if (!o) return p;
  const { id: _id, interface: _interface, ...settings } = o;
  return Object.freeze({ ...p, ...settings });
}

/**
 * A discovered PvD keeps only the servers it has a source address for. It is kept even with no
 * server left: its zones must then fail (SERVFAIL) rather than fall through to another PvD.
 */
function usable(p: PvdConfig): PvdConfig {
  const has = (family: 4 | 6 | undefined) =>
    p.sourceAddresses.some((a) => a.includes(":") === (family === 6));
  const servers = p.servers.filter((s) => s.address === undefined || has(s.family));
  return servers.length === p.servers.length ? p : Object.freeze({ ...p, servers });
}

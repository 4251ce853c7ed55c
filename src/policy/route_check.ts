/**
 * Route checks: for each server of a PvD, ask the kernel which interface a packet from the PvD's
 * source address would leave through (`ip -j route get SERVER from SOURCE`), and flag a server
 * reached through an interface that is not the PvD's (user pain: systemd#23655, #11935).
 *
 * The PvD's interface is its `interface` key, or else the interface that holds its source
 * address.
 *
 * @module
 */

import { type IpRunner, runIp } from "../host/ip_command.ts";
import type { PvdConfig } from "../config/types.ts";

/** The verdict for one server. */
export interface RouteCheck {
  /** The PvD checked. */
  readonly pvd: string;
  /** The server as written in the config. */
  readonly server: string;
  /** The PvD source address the route was asked from. */
  readonly source: string;
  /** The interface the kernel would use. */
  readonly via?: string;
  /** The interface it should use. */
  readonly expected?: string;
  /** True when the kernel would use the PvD's own interface. */
  readonly ok: boolean;
  /** One line for a person. */
  readonly detail: string;
}

interface RouteGet {
  dev?: string;
  prefsrc?: string;
  type?: string;
}

interface AddrShow {
  ifname: string;
  addr_info?: { local?: string }[];
}

/**
 * Checks every server of `pvd` that has an IP address.
 *
 * @example Usage
 * ```ts ignore
 * for (const r of await checkRoutes(config.pvds[0])) console.log(r.detail);
 * ```
 */
export async function checkRoutes(pvd: PvdConfig, ip: IpRunner = runIp): Promise<RouteCheck[]> {
  let expected = pvd.interface;
  if (!expected) {
    const links = (await ip(["addr", "show"]).catch(() => [])) as AddrShow[];
    expected = links.find((l) =>
      l.addr_info?.some((a) => a.local !== undefined && pvd.sourceAddresses.includes(a.local))
    )?.ifname;
  }
  const out: RouteCheck[] = [];
  for (const s of pvd.servers) {
    if (!s.address) continue;
    const source = pvd.sourceAddresses.find((a) => a.includes(":") === (s.family === 6));
    if (!source) continue;
    const dst = s.zone ? `${s.address}%${s.zone}` : s.address;
    const base = { pvd: pvd.id, server: s.text, source, ...(expected ? { expected } : {}) };
    try {
      const [route] = (await ip(["route", "get", dst, "from", source])) as RouteGet[];
      const via = route?.dev;
      if (!via) {
        out.push({ ...base, ok: false, detail: `${s.text} from ${source}: no route` });
      } else if (expected && via !== expected) {
        out.push({
          ...base,
          via,
          ok: false,
          detail: `${s.text} from ${source}: leaves through ${via}, not the PvD's ${expected}`,
        });
      } else {
        out.push({ ...base, via, ok: true, detail: `${s.text} from ${source}: via ${via}` });
      }
    } catch (e) {
      out.push({ ...base, ok: false, detail: `${s.text} from ${source}: ${(e as Error).message}` });
    }
  }
  return out;
}

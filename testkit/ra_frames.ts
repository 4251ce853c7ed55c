/**
 * The RAs and `/.well-known/pvd` documents the RA end-to-end tests send: a PvD option with H=1
 * for one PvD ID, carrying a PIO for 2001:db8:cafe::/64, an RDNSS (2001:db8:cafe::53) and a DNSSL
 * (example.com), as a router on the test link would advertise them.
 *
 * @module
 */

import { encodeRa } from "../src/pvd/ra_codec.ts";
import type { NdOption } from "../src/pvd/ra_types.ts";

/** A router advertisement for PvD `id` with sequence number `seq` (and DNSSL `dnssl`). */
export function pvdRa(
  id: string,
  seq: number,
  rdnssLifetime = 1800,
  dnssl: readonly string[] = ["example.com."],
): Uint8Array {
  const options: NdOption[] = [
    {
      kind: "pio",
      prefixLength: 64,
      flags: 0xc0,
      validLifetime: 86400,
      preferredLifetime: 14400,
      reserved2: 0,
      prefix: "2001:db8:cafe::",
    },
    { kind: "rdnss", reserved: 0, lifetime: rdnssLifetime, servers: ["2001:db8:cafe::53"] },
    { kind: "dnssl", reserved: 0, lifetime: 1800, domains: [...dnssl] },
  ];
  return encodeRa({
    header: {
      type: 134,
      code: 0,
      checksum: 0,
      curHopLimit: 64,
      flags: 0,
      routerLifetime: 1800,
      reachableTime: 0,
      retransTimer: 0,
    },
    options: [{
      kind: "pvd",
      h: true,
      l: false,
      r: false,
      reserved: 0,
      delay: 0,
      seq,
      id: `${id}.`,
      options,
    }],
  });
}

/** A PvD Additional Information object for `id`, valid for an hour. */
export function pvdDocument(id: string, prefixes: string[], dnsZones: string[]): string {
  return JSON.stringify({
    identifier: `${id}.`,
    expires: new Date(Date.now() + 3_600_000).toISOString(),
    prefixes,
    dnsZones,
  });
}

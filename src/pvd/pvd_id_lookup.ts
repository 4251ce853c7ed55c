/**
 * Looks up the addresses of a PvD ID (or of a host a `/.well-known/pvd` redirect names) through
 * that PvD's own Do53 servers only, from that PvD's own source addresses (RFC 8801 §4.1: "the DNS
 * name resolution of the PvD ID … MUST be performed using the considered PvD").
 *
 * Every query goes through the same parts as the stub's upstream queries: `buildUpstreamQuery`,
 * a {@linkcode UdpTransport} (random ID, a fresh random port per query, answer matched by ID and
 * question) and a {@linkcode LeakGuard} that knows only this PvD, so a query to any other server,
 * or from any other address, is refused before it is sent.
 *
 * @module
 */

import { LeakGuard } from "../policy/leak_guard.ts";
import type { ServerConfig } from "../config/types.ts";
import { Rcode, skipName, Type } from "../dns/wire.ts";
import { buildUpstreamQuery } from "../dns/query.ts";
import { UdpTransport } from "../transports/udp.ts";
import { ipv6Text } from "./ra_wire.ts";

/** What a lookup needs of a PvD. */
export interface LookupPvd {
  readonly id: string;
  readonly sourceAddresses: readonly string[];
  readonly servers: readonly ServerConfig[];
}

/** The lookup failed on every server (timeouts, refusals, SERVFAIL, no source address). */
export class PvdLookupError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "PvdLookupError";
  }
}

/** A lookup function; injectable where it is used. */
export type PvdLookup = (
  name: string,
  pvd: LookupPvd,
  options: { signal: AbortSignal; log?: (line: string) => void },
) => Promise<string[]>;

/** The local address to query `server` from: a link-local one of the same zone for a link-local
 * server, else a global IPv6 one of the PvD. */
export function sourceFor(server: ServerConfig, sources: readonly string[]): string | undefined {
  const v6 = sources.filter((s) => s.includes(":"));
  if (server.zone) {
    return v6.find((s) => s.toLowerCase().endsWith(`%${server.zone!.toLowerCase()}`));
  }
  if (server.family === 4) return sources.find((s) => !s.includes(":"));
  return v6.find((s) => !s.includes("%"));
}

/** The AAAA addresses in a DNS answer, or the rcode when it is an error. */
export function parseAaaaAnswer(msg: Uint8Array): { rcode: number; addresses: string[] } {
  if (msg.length < 12) return { rcode: 2, addresses: [] };
  const v = new DataView(msg.buffer, msg.byteOffset, msg.byteLength);
  const rcode = msg[3]! & 0x0f;
  const qd = v.getUint16(4), an = v.getUint16(6);
  let off = 12;
  for (let i = 0; i < qd && off >= 12; i++) off = skipName(msg, off) + 4;
  if (off < 12) return { rcode, addresses: [] };
  const addresses: string[] = [];
  for (let i = 0; i < an; i++) {
    off = skipName(msg, off);
    if (off < 0 || off + 10 > msg.length) break;
    const type = v.getUint16(off), cls = v.getUint16(off + 2), len = v.getUint16(off + 8);
    off += 10;
    if (off + len > msg.length) break;
    if (type === Type.AAAA && cls === 1 && len === 16) {
      addresses.push(ipv6Text(msg.subarray(off, off + 16)));
    }
    off += len;
  }
  return { rcode, addresses };
}

/**
 * Asks the PvD's Do53 servers, in order, for the AAAA records of `name`. The first server that
 * answers NOERROR or NXDOMAIN decides (an empty list means the name has no address); SERVFAIL,
 * REFUSED, timeouts and servers without a matching source address move on to the next server.
 *
 * @throws {PvdLookupError} when no server gave an answer
 */
export const lookupInPvd: PvdLookup = async (name, pvd, { signal, log }) => {
  const qname = name.endsWith(".") ? name : `${name}.`;
  const problems: string[] = [];
  for (const server of pvd.servers) {
    if (server.protocol !== "udp" || !server.address) continue;
    const source = sourceFor(server, pvd.sourceAddresses);
    if (!source) {
      problems.push(`${server.text}: no source address for it`);
      continue;
    }
    const guard = new LeakGuard([{ id: pvd.id, sourceAddresses: [source], servers: [server] }], {
      onBlocked: (p, dst, src, why) => log?.(`leak guard refused ${p} ${dst} from ${src}: ${why}`),
    });
    const transport = new UdpTransport({ pvd: pvd.id, server, source, guard });
    const id = crypto.getRandomValues(new Uint16Array(1))[0]!;
    const query = buildUpstreamQuery({
      id,
      qname,
      qtype: Type.AAAA,
      qclass: 1,
      do: false,
      cd: false,
    });
    try {
      const answer = await transport.exchange(query, {
        signal: AbortSignal.any([signal, AbortSignal.timeout(2000)]),
      });
      const { rcode, addresses } = parseAaaaAnswer(answer);
      if (rcode === Rcode.NOERROR || rcode === Rcode.NXDOMAIN) return addresses;
      problems.push(`${server.text}: rcode ${rcode}`);
    } catch (e) {
      if (signal.aborted) throw e;
      problems.push(`${server.text}: ${(e as Error).message}`);
    } finally {
      await transport.close();
    }
  }
  throw new PvdLookupError(
    `cannot look up ${name} in PvD ${pvd.id}: ${problems.join("; ") || "no Do53 server"}`,
  );
};

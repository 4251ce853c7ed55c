/**
 * Sends a Router Advertisement from a raw ICMPv6 socket, the way a router does: hop limit 255,
 * from a link-local address, to ff02::1, out of one interface. Python's socket module does the
 * sending (an implementation independent of pvdns's own FFI receiver); the kernel fills in the
 * ICMPv6 checksum, as it does for every raw ICMPv6 socket.
 *
 * @module
 */

import { execOk } from "./exec.ts";

const SCRIPT = `
import socket, sys
iface, src, payload, hops = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3]), int(sys.argv[4])
idx = socket.if_nametoindex(iface)
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, hops)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, hops)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
s.bind((src, 0, 0, idx))
s.sendto(payload, ("ff02::1", 0, 0, idx))
s.close()
`;

/**
 * Sends `payload` (an ICMPv6 RA message) from `source` on `iface` inside `netns`, with hop limit
 * `hopLimit` (255 unless a test wants an RA that must be dropped).
 */
export async function sendRa(
  netns: string,
  iface: string,
  source: string,
  payload: Uint8Array,
  hopLimit = 255,
): Promise<void> {
  const hex = Array.from(payload, (b) => b.toString(16).padStart(2, "0")).join("");
  await execOk(["/usr/bin/python3", "-c", SCRIPT, iface, source, hex, String(hopLimit)], {
    netns,
    timeoutMs: 5000,
  });
}

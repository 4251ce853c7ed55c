/**
 * The descriptor behind a Deno UDP socket, found through FFI to libc, and what pvdns does with
 * it: the batched listener (`src/listen/udp_mmsg.ts`) reads and answers through it, the upstream
 * UDP transport (`src/transports/udp.ts`) `connect(2)`s it to its server and empties it before
 * a query.
 *
 * Deno does not tell a socket's descriptor, so it is found by asking open descriptors for their
 * bound address ({@linkcode descriptorOf}). Linux only (the sockaddr layouts are Linux's), and
 * only with the ffi permission: without it nothing here is loaded, and callers do without.
 *
 * @module
 */

import ipaddr from "ipaddr.js";

/** The libc calls {@linkcode descriptorOf} needs (a caller may pass a library with more). */
export interface DescriptorLibc {
  /** `getsockname(2)`. */
  getsockname(fd: number, name: Uint8Array, length: Uint8Array): number;
  /** `getsockopt(2)`. */
  getsockopt(
    fd: number,
    level: number,
    name: number,
    value: Uint8Array,
    length: Uint8Array,
  ): number;
}

const SYMBOLS = {
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
} as const;

/** libc with what {@linkcode connectDatagram} and {@linkcode drainDatagrams} call. */
export type SocketLibc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

const AF_INET = 2, AF_INET6 = 10, SOCK_DGRAM = 2;
const SOL_SOCKET = 1, SO_TYPE = 3, SO_ERROR = 4;
/** Linux's errno for a refused connection (an ICMP port unreachable on a connected socket). */
export const ECONNREFUSED = 111;
const MSG_DONTWAIT = 0x40;
/** Bytes per address buffer (sockaddr_in6 is 28). */
const NAME = 32;

let socketLibc: SocketLibc | null | undefined;

/**
 * libc for connecting and draining sockets, or null when it cannot be had: not Linux, no glibc,
 * or no ffi permission. The permission is asked without prompting (`dlopen` would make Deno
 * prompt on a terminal, and the daemon's start task runs without --allow-ffi).
 */
export function loadSocketLibc(): SocketLibc | null {
  if (socketLibc !== undefined) return socketLibc;
  socketLibc = null;
  if (Deno.build.os !== "linux") return null;
  if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return null;
  try {
    socketLibc = Deno.dlopen("libc.so.6", SYMBOLS).symbols;
  } catch { /* no glibc */ }
  return socketLibc;
}

/** `address:port` as a Linux `sockaddr_in` (16 bytes) or `sockaddr_in6` (28 bytes). */
export function sockaddr(address: string, port: number): Uint8Array {
  const ip = ipaddr.parse(address);
  const out = new Uint8Array(ip.kind() === "ipv4" ? 16 : 28);
  const dv = new DataView(out.buffer);
  dv.setUint16(0, ip.kind() === "ipv4" ? AF_INET : AF_INET6, true);
  dv.setUint16(2, port); // network order
  out.set(ip.toByteArray(), ip.kind() === "ipv4" ? 4 : 8);
  return out;
}

/** Scratch of {@linkcode boundTo}: its calls allocate nothing. */
const name = new Uint8Array(NAME);
const len = new Uint32Array(1);
const lenBytes = new Uint8Array(len.buffer);
const type = new Int32Array(1);
const typeBytes = new Uint8Array(type.buffer);
const typeLen = new Uint32Array(1);
const typeLenBytes = new Uint8Array(typeLen.buffer);

/** True when `fd` is a UDP socket bound to exactly `want` (family, port, address). */
function boundTo(l: DescriptorLibc, fd: number, want: Uint8Array): boolean {
  len[0] = NAME;
  if (l.getsockname(fd, name, lenBytes) !== 0) return false; // not open, or not a socket
  if (len[0] !== want.length) return false;
  // Family and port, then the address (skipping sin6_flowinfo); sin6_scope_id is not compared.
  const [from, to] = want.length === 16 ? [4, 8] : [8, 24];
  for (let i = 0; i < to; i++) {
    if ((i < 4 || i >= from) && name[i] !== want[i]) return false;
  }
  typeLen[0] = 4;
  l.getsockopt(fd, SOL_SOCKET, SO_TYPE, typeBytes, typeLenBytes);
  return type[0] === SOCK_DGRAM;
}

/**
 * The descriptor of the UDP socket bound to exactly `want` (a {@linkcode sockaddr}), or -1.
 * Only one socket can be bound there (pvdns binds without SO_REUSEADDR). `hint` is tried
 * first: a new socket takes the lowest free descriptor, so one just freed is a good guess.
 * Then descriptors are asked lowest first, so the scan ends soon (a full scan of 65,536 takes
 * ~20 ms, and only happens if the socket is not found).
 */
export function descriptorOf(l: DescriptorLibc, want: Uint8Array, hint = -1): number {
  if (hint >= 0 && boundTo(l, hint, want)) return hint;
  for (let fd = 0; fd < 65536; fd++) {
    if (boundTo(l, fd, want)) return fd;
  }
  return -1;
}

/** Writes `port` into a {@linkcode sockaddr} (so one made once serves every port). */
export function setSockaddrPort(address: Uint8Array, port: number): void {
  address[2] = port >> 8;
  address[3] = port & 0xff;
}

/**
 * `connect(2)`s the UDP socket bound to `bound` (a {@linkcode sockaddr}) to `peer`, so that the
 * kernel drops datagrams from any other address or port and an ICMP port unreachable fails the
 * next receive. Returns the socket's descriptor, or -1 when it could not (nothing changed).
 * `hint`: see {@linkcode descriptorOf}.
 */
export function connectDatagram(
  l: SocketLibc,
  bound: Uint8Array,
  peer: Uint8Array,
  hint = -1,
): number {
  const fd = descriptorOf(l, bound, hint);
  if (fd < 0) return -1;
  return l.connect(fd, peer, peer.length) === 0 ? fd : -1;
}

const error = new Int32Array(1);
const errorBytes = new Uint8Array(error.buffer);
const errorLen = new Uint32Array(1);
const errorLenBytes = new Uint8Array(errorLen.buffer);

/**
 * The error pending on socket `fd` (`SO_ERROR`, which asking clears), 0 when none. Deno's
 * receive does not wake on a socket error (an ICMP port unreachable on a connected socket sets
 * one and no data), so this is how it is learned.
 */
export function pendingSocketError(l: DescriptorLibc, fd: number): number {
  errorLen[0] = 4;
  error[0] = 0;
  return l.getsockopt(fd, SOL_SOCKET, SO_ERROR, errorBytes, errorLenBytes) === 0 ? error[0]! : 0;
}

/**
 * Reads and drops what is waiting on socket `fd` without blocking (at most `max` datagrams), into
 * `buffer`; returns how many there were. A socket bound ahead of need is emptied before its
 * query goes out, so that nothing sent to it before then can be taken for the answer.
 */
export function drainDatagrams(l: SocketLibc, fd: number, buffer: Uint8Array, max = 256): number {
  let n = 0;
  while (n < max && l.recv(fd, buffer, BigInt(buffer.length), MSG_DONTWAIT) >= 0) n++;
  return n;
}

/**
 * A raw ICMPv6 socket that receives Router Advertisements on one interface, through Deno FFI to
 * the C library (Deno has no raw socket API of its own).
 *
 * Why FFI and not a helper process: the kernel keeps the PvD (21) and DNR (144) options to
 * itself (it passes only RDNSS, DNSSL, PIO … to netlink listeners, STANDARDS §8), so the whole
 * RA must be read from a raw socket. A helper (`tcpdump -w -`, a Python script) would be a second
 * program to install, supervise and parse; five libc calls do the same in-process, and the socket
 * options we need exist only there:
 *
 * - `socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6)` (needs root or CAP_NET_RAW, and `--allow-ffi`);
 * - `ICMP6_FILTER` passes only type 134, so the kernel drops everything else before we see it;
 * - `SO_BINDTODEVICE` pins the socket to the one interface (one socket per interface), and
 *   `IPV6_RECVPKTINFO` reports the ingress interface index anyway, checked against it;
 * - `IPV6_RECVHOPLIMIT` reports each packet's hop limit (an RA must arrive with 255).
 *
 * The event loop never blocks: the only blocking call, `poll(fd, POLLIN, 200 ms)`, is declared
 * `nonblocking: true`, so Deno runs it on a worker thread and hands back a promise. When it says
 * the socket is readable, `recvmsg(…, MSG_DONTWAIT)` runs on the main thread and returns at once.
 * `close()` sets a flag, waits for the poll in flight (at most 200 ms) and only then closes the
 * descriptor, so a descriptor number is never reused under a pending call.
 *
 * Struct layouts are those of Linux on 64-bit little-endian machines (x86_64, aarch64).
 *
 * @module
 */

/** One Router Advertisement as it arrived: the ICMPv6 message, without the IPv6 header. */
export interface ReceivedPacket {
  /** Name of the interface the socket is bound to. */
  readonly interface: string;
  /** Index of the ingress interface (from IPV6_PKTINFO; 0 when the kernel gave none). */
  readonly ifindex: number;
  /** IPv6 source address, canonical text, without zone. */
  readonly source: string;
  /** Hop limit of the IPv6 header (-1 when the kernel gave none). */
  readonly hopLimit: number;
  /** The ICMPv6 message, from its type byte on. */
  readonly payload: Uint8Array;
}

/** A socket receiving RAs on one interface. */
export interface RaSocket {
  /** The interface. */
  readonly interface: string;
  /** The next packet, or `null` once the socket is closed or broken. */
  receive(): Promise<ReceivedPacket | null>;
  /** Stops receiving and releases the descriptor (waits for a pending poll, ≤ 200 ms). */
  close(): Promise<void>;
}

/** Opens an {@linkcode RaSocket} on an interface; injectable in {@linkcode RaDiscoveryOptions}. */
export type RaSocketFactory = (iface: string) => Promise<RaSocket>;

import { ipv6Text } from "./ra_wire.ts";

// Linux constants (include/uapi/linux/*.h, netinet/icmp6.h).
const AF_INET6 = 10;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0o2000000;
const IPPROTO_ICMPV6 = 58;
const IPPROTO_IPV6 = 41;
const SOL_SOCKET = 1;
const SO_BINDTODEVICE = 25;
const ICMP6_FILTER = 1;
const IPV6_RECVPKTINFO = 49;
const IPV6_PKTINFO = 50;
const IPV6_RECVHOPLIMIT = 51;
const IPV6_HOPLIMIT = 52;
const POLLIN = 0x1;
const POLLERR = 0x8;
const POLLNVAL = 0x20;
const MSG_DONTWAIT = 0x40;
const MSG_TRUNC = 0x20;
const ND_ROUTER_ADVERT = 134;
const POLL_MS = 200;

const SYMBOLS = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32", nonblocking: true },
  recvmsg: { parameters: ["i32", "buffer", "i32"], result: "isize" },
  close: { parameters: ["i32"], result: "i32" },
  if_nametoindex: { parameters: ["buffer"], result: "u32" },
  strerror: { parameters: ["i32"], result: "pointer" },
  __errno_location: { parameters: [], result: "pointer" },
} as const;

type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];
let libc: Libc | undefined;

/** The C library, opened on first use (so importing this module needs no `--allow-ffi`). */
function lib(): Libc {
  if (libc) return libc;
  if (Deno.build.os !== "linux" || !["x86_64", "aarch64"].includes(Deno.build.arch)) {
    throw new Error(`raw ICMPv6 sockets need Linux on x86_64 or aarch64, not ${Deno.build.target}`);
  }
  libc = Deno.dlopen("libc.so.6", SYMBOLS).symbols;
  return libc;
}

/** errno of the last failed call on this (the main) thread, as `ENAME: message`. */
function lastError(): string {
  const l = lib();
  const p = l.__errno_location();
  const errno = p ? new Deno.UnsafePointerView(p).getInt32() : 0;
  const m = l.strerror(errno);
  return m ? `${new Deno.UnsafePointerView(m).getCString()} (errno ${errno})` : `errno ${errno}`;
}

function cString(text: string): Uint8Array<ArrayBuffer> {
  const bytes = new TextEncoder().encode(text);
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}

function int32(value: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setInt32(0, value, true);
  return out;
}

/** Index of interface `iface`, or 0 when there is none (`if_nametoindex`). */
export function interfaceIndex(iface: string): number {
  if (iface.length === 0 || iface.length > 15) return 0;
  return lib().if_nametoindex(cString(iface));
}

function pointerValue(buffer: Uint8Array<ArrayBuffer>): bigint {
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buffer)));
}

/**
 * Opens a raw ICMPv6 socket that receives only Router Advertisements arriving on `iface`.
 *
 * @throws {Error} when the interface does not exist, or the socket cannot be opened (not root,
 * no `--allow-ffi`, not Linux)
 */
export function openRaSocket(iface: string): Promise<RaSocket> {
  const l = lib();
  const ifindex = interfaceIndex(iface);
  if (ifindex === 0) return Promise.reject(new Error(`no interface ${iface}`));
  const fd = l.socket(AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMPV6);
  if (fd < 0) return Promise.reject(new Error(`raw ICMPv6 socket: ${lastError()}`));
  const set = (level: number, name: number, value: Uint8Array<ArrayBuffer>, what: string) => {
    if (l.setsockopt(fd, level, name, value, value.length) !== 0) {
      const message = `${what} on ${iface}: ${lastError()}`;
      l.close(fd);
      throw new Error(message);
    }
  };
  try {
    // ICMP6_FILTER: a set bit blocks a type (Linux); block all, then pass 134.
    const filter = new Uint8Array(32).fill(0xff);
    filter[ND_ROUTER_ADVERT >> 3]! &= ~(1 << (ND_ROUTER_ADVERT & 7));
    set(IPPROTO_ICMPV6, ICMP6_FILTER, filter, "ICMP6_FILTER");
    set(SOL_SOCKET, SO_BINDTODEVICE, cString(iface), "SO_BINDTODEVICE");
    set(IPPROTO_IPV6, IPV6_RECVPKTINFO, int32(1), "IPV6_RECVPKTINFO");
    set(IPPROTO_IPV6, IPV6_RECVHOPLIMIT, int32(1), "IPV6_RECVHOPLIMIT");
  } catch (e) {
    return Promise.reject(e);
  }
  return Promise.resolve(new FfiRaSocket(iface, fd));
}

class FfiRaSocket implements RaSocket {
  readonly interface: string;
  #fd: number;
  #closed = false;
  #pending: Promise<unknown> = Promise.resolve();
  #queue: ReceivedPacket[] = [];
  // Buffers handed to the kernel: kept alive for the socket's life, and all off the V8 heap. A
  // typed array of 64 bytes or less is stored on the heap, where a garbage collection may move
  // it: a pointer to it kept inside #msg, or given to poll() running on another thread, would
  // then point at whatever V8 put there next.
  #arena = new ArrayBuffer(512);
  #pollfd = new Uint8Array(this.#arena, 0, 8);
  #name = new Uint8Array(this.#arena, 8, 28);
  #iov = new Uint8Array(this.#arena, 40, 16);
  #msg = new Uint8Array(this.#arena, 56, 56);
  #control = new Uint8Array(this.#arena, 128, 256);
  #data = new Uint8Array(65536);

  constructor(iface: string, fd: number) {
    this.interface = iface;
    this.#fd = fd;
    const pfd = new DataView(this.#arena, 0, 8);
    pfd.setInt32(0, fd, true);
    pfd.setInt16(4, POLLIN, true);
    const iov = new DataView(this.#arena, 40, 16);
    iov.setBigUint64(0, pointerValue(this.#data), true);
    iov.setBigUint64(8, BigInt(this.#data.length), true);
    const msg = new DataView(this.#arena, 56, 56);
    msg.setBigUint64(0, pointerValue(this.#name), true);
    msg.setBigUint64(16, pointerValue(this.#iov), true);
    msg.setBigUint64(24, 1n, true);
    msg.setBigUint64(32, pointerValue(this.#control), true);
  }

  async receive(): Promise<ReceivedPacket | null> {
    const l = lib();
    let errors = 0;
    while (!this.#closed) {
      const queued = this.#queue.shift();
      if (queued) return queued;
      const call = l.poll(this.#pollfd, 1n, POLL_MS);
      this.#pending = call;
      const ready = await call;
      if (this.#closed) break;
      if (ready < 0) {
        // EINTR: poll again; anything that keeps failing ends the socket (the caller reopens).
        if (++errors >= 10) return null;
        continue;
      }
      errors = 0;
      if (ready === 0) continue;
      const revents = new DataView(this.#arena, 0, 8).getInt16(6, true);
      if (revents & (POLLERR | POLLNVAL)) return null;
      this.#drain();
    }
    return null;
  }

  /** Reads every datagram queued in the kernel (at most 64 per wake-up). */
  #drain(): void {
    const l = lib();
    const msg = new DataView(this.#arena, 56, 56);
    for (let i = 0; i < 64; i++) {
      msg.setUint32(8, this.#name.length, true);
      msg.setBigUint64(40, BigInt(this.#control.length), true);
      msg.setInt32(48, 0, true);
      const n = Number(l.recvmsg(this.#fd, this.#msg, MSG_DONTWAIT));
      if (n < 0) return; // EAGAIN: nothing left
      if (msg.getInt32(48, true) & MSG_TRUNC) continue;
      const name = new DataView(this.#arena, 8, 28);
      if (msg.getUint32(8, true) < 24 || name.getUint16(0, true) !== AF_INET6) continue;
      const source = ipv6Text(this.#name.subarray(8, 24));
      let hopLimit = -1, ifindex = 0;
      const controlLen = Math.min(Number(msg.getBigUint64(40, true)), this.#control.length);
      const cv = new DataView(this.#arena, 128, 256);
      for (let off = 0; off + 16 <= controlLen;) {
        const len = Number(cv.getBigUint64(off, true));
        if (len < 16 || off + len > controlLen) break;
        const level = cv.getInt32(off + 8, true), type = cv.getInt32(off + 12, true);
        if (level === IPPROTO_IPV6 && type === IPV6_HOPLIMIT && len >= 20) {
          hopLimit = cv.getInt32(off + 16, true);
        } else if (level === IPPROTO_IPV6 && type === IPV6_PKTINFO && len >= 36) {
          ifindex = cv.getUint32(off + 32, true);
        }
        off += (len + 7) & ~7;
      }
      this.#queue.push({
        interface: this.interface,
        ifindex,
        source,
        hopLimit,
        payload: this.#data.slice(0, n),
      });
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#pending.catch(() => {});
    lib().close(this.#fd);
    this.#queue = [];
  }
}

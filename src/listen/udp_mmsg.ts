/**
 * A UDP DNS listener that moves datagrams in batches: `recvmmsg(2)` and `sendmmsg(2)` through
 * Deno's FFI to libc, on a non-blocking socket.
 *
 * Why: with `Deno.listenDatagram` every datagram is one asynchronous op in and one out, and that
 * runtime overhead (about 17 µs of CPU per query on our machines) was most of pvdns's cost on a
 * cache hit — more than twice dnsmasq's whole cost. Reading up to 64 queries per system call and
 * answering them all with one more brings the per-query cost under dnsmasq's (bench/README.md,
 * `deno task bench`,
 * has the figures). Answers that are ready at once (cache hits, local answers) go out in the same
 * batch;
 * answers that need an upstream are sent one by one with `sendto(2)` when they arrive.
 *
 * The socket itself is Deno's (`Deno.listenDatagram`): when it has nothing to read, one pending
 * `receive()` lets Deno's event loop wake the listener with the next datagram, which is served
 * and followed by batched reads until the socket is drained. (pvdns 0.1 waited in `poll(2)` on
 * Deno's blocking thread pool instead: one more thread wake-up per query when they come one at
 * a time; its p99 at 10,000 QPS was higher. The price here: Deno's receive op leaves ~90 bytes
 * per datagram in the old generation, see bench/README.md.) While queries keep coming, the loop
 * yields to the event loop every few batches so upstream answers and timers run.
 *
 * Linux only (the struct layouts are LP64 Linux's). {@linkcode mmsgAvailable} says whether it
 * can be used; pvdns falls back to `Deno.listenDatagram` otherwise.
 *
 * @module
 */

import ipaddr from "ipaddr.js";
import { setImmediate } from "node:timers";
import { descriptorOf, sockaddr } from "../sys/socket_fd.ts";
import {
  type DnsListener,
  type ListenerSlot,
  MAX_UDP_QUERY,
  type QueryHandler,
} from "./listener.ts";

const SYMBOLS = {
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  recvmmsg: { parameters: ["i32", "buffer", "u32", "i32", "pointer"], result: "i32" },
  sendmmsg: { parameters: ["i32", "buffer", "u32", "i32"], result: "i32" },
  sendto: { parameters: ["i32", "buffer", "usize", "i32", "buffer", "u32"], result: "isize" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
} as const;

const AF_INET = 2;
const MSG_DONTWAIT = 0x40, MSG_TRUNC = 0x20;
const SOL_SOCKET = 1, SO_RCVBUF = 8, SO_RCVBUFFORCE = 33;
/**
 * Receive buffer asked for: room for a few thousand queries, so that a pause of the event loop
 * (a garbage collection, a burst of upstream answers) is absorbed instead of dropping queries.
 */
const RECEIVE_BUFFER = 4 * 1024 * 1024;
/** Datagrams per system call. */
const BATCH = 64;
/** Bytes per receive slot: the largest UDP query either listener takes. */
const SLOT = MAX_UDP_QUERY;
/** Bytes per address slot (sockaddr_in6 is 28). */
const NAME = 32;
/** LP64 Linux: struct msghdr is 56 bytes; struct mmsghdr adds msg_len (+ padding) = 64. */
const MMSG = 64;
/** Batches handled before giving the event loop a turn. */
const YIELD_EVERY = 1;

type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];
let libc: Libc | null | undefined;

/** libc through FFI, or null when FFI is not allowed or not Linux. */
function loadLibc(): Libc | null {
  if (libc !== undefined) return libc;
  try {
    libc = Deno.build.os === "linux" ? Deno.dlopen("libc.so.6", SYMBOLS).symbols : null;
  } catch {
    libc = null; // no --allow-ffi, or no glibc
  }
  return libc;
}

/**
 * True when the batched listener can run here (Linux, glibc, FFI allowed). Without the ffi
 * permission it says false without trying: `dlopen` would make Deno prompt on a terminal, and
 * `--udp-listener auto` is to fall back to Deno.listenDatagram quietly.
 */
export function mmsgAvailable(): boolean {
  if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return false;
  return loadLibc() !== null;
}

const v4Names = new Map<number, string>();

/** The client's address and port from a sockaddr at `off`. */
function peer(names: Uint8Array, dv: DataView, off: number): { address: string; port: number } {
  const port = dv.getUint16(off + 2);
  if (dv.getUint16(off, true) === AF_INET) {
    const n = dv.getUint32(off + 4);
    let address = v4Names.get(n);
    if (address === undefined) {
      address = `${n >>> 24}.${(n >>> 16) & 0xff}.${(n >>> 8) & 0xff}.${n & 0xff}`;
      if (v4Names.size > 4096) v4Names.clear();
      v4Names.set(n, address);
    }
    return { address, port };
  }
  const bytes = Array.from(names.subarray(off + 8, off + 24));
  return { address: (ipaddr.fromByteArray(bytes) as ipaddr.IPv6).toRFC5952String(), port };
}

function ignore(): void {}

function pointer(a: Uint8Array, offset = 0): bigint {
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(a as Uint8Array<ArrayBuffer>))) +
    BigInt(offset);
}

/**
 * Asks for {@linkcode RECEIVE_BUFFER}: SO_RCVBUFFORCE where allowed (root, CAP_NET_ADMIN), else
 * SO_RCVBUF, which the kernel caps at net.core.rmem_max. Best effort: a smaller buffer still works.
 */
function growReceiveBuffer(l: Libc, fd: number): void {
  const size = new Uint8Array(new Int32Array([RECEIVE_BUFFER]).buffer);
  if (l.setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, size, 4) !== 0) {
    l.setsockopt(fd, SOL_SOCKET, SO_RCVBUF, size, 4);
  }
}

/** The socket's receive buffer in bytes, as the kernel reports it (twice what was asked). */
function receiveBufferOf(l: Libc, fd: number): number {
  const out = new Int32Array(1);
  const len = new Uint32Array([4]);
  l.getsockopt(fd, SOL_SOCKET, SO_RCVBUF, new Uint8Array(out.buffer), new Uint8Array(len.buffer));
  return out[0]!;
}

/** Binds a batched UDP listener and serves queries until closed. */
export function startMmsgUdpListener(
  slot: ListenerSlot,
  handle: QueryHandler,
  log: (line: string) => void,
): DnsListener & { readonly receiveBuffer: number } {
  const listener = slot.listener;
  const l = loadLibc();
  if (!l) throw new Error("recvmmsg listener needs Linux and --allow-ffi");
  // The socket is Deno's, so that Deno's own event loop says when it is readable (no thread of
  // ours waits in poll(2): one thread wake-up less per query when they come one at a time);
  // reading and answering go through libc in batches.
  const conn = Deno.listenDatagram({
    hostname: listener.address,
    port: listener.port,
    transport: "udp",
  });
  const port = (conn.addr as Deno.NetAddr).port;
  const bound = sockaddr(listener.address, port);
  const fd = descriptorOf(l, bound);
  if (fd < 0) {
    conn.close();
    throw new Error(`recvmmsg listener: cannot find the socket of ${listener.text}`);
  }
  growReceiveBuffer(l, fd);

  // Receive ring: one slot per datagram, each with its own iovec and address buffer.
  const bufs = new Uint8Array(BATCH * SLOT);
  const names = new Uint8Array(BATCH * NAME);
  const namesView = new DataView(names.buffer);
  const recvIov = new Uint8Array(BATCH * 16);
  const recvHdr = new Uint8Array(BATCH * MMSG);
  const rh = new DataView(recvHdr.buffer);
  const ri = new DataView(recvIov.buffer);
  // Send batch: iovecs point at the replies themselves; addresses at the receive slots.
  const sendIov = new Uint8Array(BATCH * 16);
  const sendHdr = new Uint8Array(BATCH * MMSG);
  const sh = new DataView(sendHdr.buffer);
  const si = new DataView(sendIov.buffer);
  // The address slots never move (off-heap, referenced below): their pointers are made once.
  const namePointers: bigint[] = [];
  for (let i = 0; i < BATCH; i++) {
    namePointers.push(pointer(names, i * NAME));
    ri.setBigUint64(i * 16, pointer(bufs, i * SLOT), true);
    ri.setBigUint64(i * 16 + 8, BigInt(SLOT), true);
    rh.setBigUint64(i * MMSG, pointer(names, i * NAME), true);
    rh.setBigUint64(i * MMSG + 16, pointer(recvIov, i * 16), true);
    rh.setBigUint64(i * MMSG + 24, 1n, true);
    sh.setBigUint64(i * MMSG + 16, pointer(sendIov, i * 16), true);
    sh.setBigUint64(i * MMSG + 24, 1n, true);
  }
  const keep: Uint8Array[] = []; // replies referenced by the send batch until it is sent
  const buffers: unknown[] = [bufs, names, recvIov, recvHdr, sendIov, sendHdr];
  // The datagram that wakes the loop, read by Deno; one byte more than a slot tells one too big.
  const first = new Uint8Array(SLOT + 1);

  let closed = false;
  let stopped = false; // graceful stop: nothing new is read, answers to taken queries still go
  const sendTo = (reply: Uint8Array, to: Uint8Array) => {
    if (closed) return;
    l.sendto(fd, reply, BigInt(reply.length), MSG_DONTWAIT, to, to.length);
  };
  /** Serves one query read by Deno (the one that woke the loop). */
  const serveFirst = (data: Uint8Array, from: Deno.NetAddr) => {
    if (data.length > SLOT) return; // the batched reads drop these too (MSG_TRUNC)
    const client = { address: from.hostname, port: from.port, transport: "udp" as const };
    const reply = handle(data.slice(), client, slot);
    // Answered through Deno too: its address is Deno's (an IPv6 zone included), and the
    // datagrams that come one at a time are the ones that do not need a batch.
    if (reply instanceof Promise) {
      reply.then((r) => {
        if (r && !closed) conn.send(r, from).catch(ignore);
      }, ignore);
    } else if (reply) conn.send(reply, from).catch(ignore);
  };

  const loop = (async () => {
    let batches = 0;
    while (!closed && !stopped) {
      for (let i = 0; i < BATCH; i++) rh.setUint32(i * MMSG + 8, NAME, true);
      const n = l.recvmmsg(fd, recvHdr, BATCH, MSG_DONTWAIT, null);
      if (n <= 0) {
        // Nothing to read: Deno's event loop wakes us with the next datagram.
        let data: Uint8Array, from: Deno.Addr;
        try {
          [data, from] = await conn.receive(first);
        } catch (e) {
          if (closed) return;
          throw e;
        }
        if (closed || stopped) return;
        serveFirst(data, from as Deno.NetAddr);
        continue;
      }
      let out = 0;
      for (let i = 0; i < n; i++) {
        // Bigger than a slot: the kernel cut it. Dropped, as the other listener drops it.
        if (rh.getInt32(i * MMSG + 48, true) & MSG_TRUNC) continue;
        const len = rh.getUint32(i * MMSG + 56, true);
        // A copy: queries answered later keep their bytes after this slot is reused.
        const raw = bufs.slice(i * SLOT, i * SLOT + Math.min(len, SLOT));
        const from = peer(names, namesView, i * NAME);
        const client = { address: from.address, port: from.port, transport: "udp" as const };
        const reply = handle(raw, client, slot);
        if (reply instanceof Promise) {
          const to = names.slice(i * NAME, i * NAME + rh.getUint32(i * MMSG + 8, true));
          reply.then((r) => r && sendTo(r, to), () => {});
        } else if (reply) {
          keep.push(reply);
          sh.setBigUint64(out * MMSG, namePointers[i]!, true);
          sh.setUint32(out * MMSG + 8, rh.getUint32(i * MMSG + 8, true), true);
          si.setBigUint64(out * 16, pointer(reply), true);
          si.setBigUint64(out * 16 + 8, BigInt(reply.length), true);
          out++;
        }
      }
      // Datagrams the kernel cannot take now are dropped, as a full socket buffer would.
      if (out > 0) l.sendmmsg(fd, sendHdr, out, MSG_DONTWAIT);
      keep.length = 0;
      // Give the event loop a turn (upstream answers, timers, TCP). setTimeout(0) would cost
      // about 2 ms here; setImmediate a few µs.
      // A batch that did not fill up drained the socket: the next read finds nothing and waits
      // for Deno's receive, which yields anyway, so no extra turn (and its promise) is spent here.
      if (n === BATCH && ++batches % YIELD_EVERY === 0) await new Promise((r) => setImmediate(r));
    }
  })().catch((e) => log(`pvdns: udp ${listener.text} stopped: ${(e as Error).message}`));

  const text = listener.address.includes(":")
    ? `[${listener.address}]:${port}`
    : `${listener.address}:${port}`;
  return {
    text,
    port,
    receiveBuffer: receiveBufferOf(l, fd),
    stop() {
      stopped = true;
      return Promise.resolve();
    },
    async close() {
      if (closed) return;
      closed = true;
      conn.close(); // ends a waiting receive; the descriptor is Deno's to close
      await loop;
      // The kernel held raw pointers into these while the loop ran: they must outlive it.
      buffers.length = 0;
    },
  };
}

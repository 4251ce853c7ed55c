/**
 * Packet captures for tests: tcpdump writes a pcap file on one interface (in a network
 * namespace or not), and the file is read back here into IP packets with their UDP/TCP ports
 * and payloads, so a test can assert on what really crossed a link (ports, padding, which
 * server was asked) rather than on what pvdns says it did.
 *
 * @module
 */

import { inNetns } from "./exec.ts";

/** One captured IPv4/IPv6 UDP or TCP packet. */
export interface CapturedPacket {
  readonly protocol: "udp" | "tcp";
  readonly src: string;
  readonly sport: number;
  readonly dst: string;
  readonly dport: number;
  /** The UDP payload, or the TCP segment's data. */
  readonly payload: Uint8Array;
}

/** A running capture. */
export interface Capture {
  /** Every packet captured so far (the file is read again on each call). */
  packets(): Promise<CapturedPacket[]>;
  /** Ends tcpdump (SIGINT, then SIGKILL after 5 s) and removes the file. Idempotent. */
  stop(): Promise<void>;
}

/** Options of {@linkcode startCapture}. */
export interface CaptureOptions {
  /** Interface to capture on, e.g. `lo` or a veth end. */
  readonly interface: string;
  /** tcpdump filter expression, e.g. `udp port 53 and host 127.1.2.3`. */
  readonly filter: string;
  /** Run tcpdump inside this network namespace. */
  readonly netns?: string;
}

/** Starts tcpdump; resolves once it says it is listening (queries sent after that are seen). */
export async function startCapture(options: CaptureOptions): Promise<Capture> {
  const file = await Deno.makeTempFile({ prefix: "pvdns-capture-", suffix: ".pcap" });
  // -U: write each packet as it comes, so packets() sees it without stopping the capture.
  const argv = inNetns(options.netns, [
    "tcpdump",
    "-i",
    options.interface,
    "-n",
    "-U",
    // Packets reach tcpdump at once, not when a kernel ring block fills or times out (~1 s).
    "--immediate-mode",
    // 16 MiB of kernel buffer: a burst of a few thousand packets is not dropped before tcpdump
    // reads it (at the default 2 MiB, 6 of 2,000 went missing once).
    "-B",
    "16384",
    // tcpdump drops to its own user before it opens the file, which is root's (0600).
    "-Z",
    "root",
    "-s",
    "0",
    "-w",
    file,
    options.filter,
  ]);
  const child = new Deno.Command(argv[0]!, {
    args: argv.slice(1),
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let stderr = "";
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  const pump = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of child.stderr) stderr += decoder.decode(chunk);
  })();
  let stopped: Promise<void> | undefined;
  const stop = () =>
    stopped ??= (async () => {
      if (!exited) child.kill("SIGINT");
      const killer = setTimeout(() => !exited && child.kill("SIGKILL"), 5000);
      try {
        await status;
        await pump;
      } finally {
        clearTimeout(killer);
        await Deno.remove(file).catch(() => {});
      }
    })();
  for (let i = 0; i < 200 && !/listening on/.test(stderr) && !exited; i++) {
    await new Promise((r) => setTimeout(r, 25));
  }
  if (!/listening on/.test(stderr)) {
    await stop();
    throw new Error(`tcpdump on ${options.interface} did not start: ${stderr}`);
  }
  return {
    stop,
    async packets() {
      return parsePcap(await Deno.readFile(file));
    },
  };
}

/** Reads a classic pcap file (Ethernet or Linux cooked link layer) into IP packets. */
export function parsePcap(bytes: Uint8Array): CapturedPacket[] {
  if (bytes.length < 24) return [];
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = dv.getUint32(0, true);
  const little = magic === 0xa1b2c3d4 || magic === 0xa1b23c4d;
  if (!little && dv.getUint32(0, false) !== 0xa1b2c3d4 && dv.getUint32(0, false) !== 0xa1b23c4d) {
    throw new Error("not a pcap file");
  }
  const linkType = dv.getUint32(20, little);
  const out: CapturedPacket[] = [];
  for (let off = 24; off + 16 <= bytes.length;) {
    const captured = dv.getUint32(off + 8, little);
    const start = off + 16;
    off = start + captured;
    if (off > bytes.length) break; // a record still being written
    const frame = bytes.subarray(start, start + captured);
    let ip: number, etherType: number;
    if (linkType === 1) [ip, etherType] = [14, frame[12]! << 8 | frame[13]!]; // Ethernet
    else if (linkType === 113) [ip, etherType] = [16, frame[14]! << 8 | frame[15]!]; // SLL
    else if (linkType === 276) [ip, etherType] = [20, frame[0]! << 8 | frame[1]!]; // SLL2
    else throw new Error(`pcap link type ${linkType} not supported`);
    const p = parseIp(frame.subarray(ip), etherType);
    if (p) out.push(p);
  }
  return out;
}

function parseIp(b: Uint8Array, etherType: number): CapturedPacket | undefined {
  let proto: number, src: string, dst: string, l4: number, end: number;
  if (etherType === 0x0800 && b.length >= 20) {
    proto = b[9]!;
    l4 = (b[0]! & 0x0f) * 4;
    end = Math.min(b.length, b[2]! << 8 | b[3]!);
    src = [...b.subarray(12, 16)].join(".");
    dst = [...b.subarray(16, 20)].join(".");
  } else if (etherType === 0x86dd && b.length >= 40) {
    proto = b[6]!; // no extension headers in our tests
    l4 = 40;
    end = Math.min(b.length, 40 + (b[4]! << 8 | b[5]!));
    src = ipv6(b.subarray(8, 24));
    dst = ipv6(b.subarray(24, 40));
  } else return undefined;
  const seg = b.subarray(l4, end);
  if (seg.length < 8) return undefined;
  const sport = seg[0]! << 8 | seg[1]!, dport = seg[2]! << 8 | seg[3]!;
  if (proto === 17) return { protocol: "udp", src, sport, dst, dport, payload: seg.subarray(8) };
  if (proto === 6 && seg.length >= 20) {
    const payload = seg.subarray((seg[12]! >> 4) * 4);
    return { protocol: "tcp", src, sport, dst, dport, payload };
  }
  return undefined;
}

function ipv6(b: Uint8Array): string {
  const words: string[] = [];
  for (let i = 0; i < 16; i += 2) words.push((b[i]! << 8 | b[i + 1]!).toString(16));
  return words.join(":").replace(/(^|:)0(:0)+(:|$)/, "::").replace(/:{3,}/, "::");
}

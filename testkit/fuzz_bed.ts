/**
 * The fuzz bed: a real dnsmasq and a real `pvdns serve` in front of it (per UDP listener
 * implementation), how to tell that the process is still well (alive, no internal error logged),
 * and the probes that ask it valid questions over UDP and TCP after every batch.
 *
 * ```
 *  driver ──UDP/TCP──► pvdns serve (mmsg | deno) ──► dnsmasq (www.fuzz.test, big.fuzz.test,
 *                      rules: local.fuzz.test → 192.0.2.53,       everything else NXDOMAIN)
 *                      alias → CNAME, blocked → NXDOMAIN, refused → REFUSED
 * ```
 *
 * @module
 */

import { type Dnsmasq, startDnsmasq } from "./dnsmasq.ts";
import { checkReply, hex, parseStrict } from "./fuzz_check.ts";
import { FUZZ_NAMES } from "./fuzz_inputs.ts";
import { loopbackAddress } from "./loopback.ts";
import { startPvdns } from "./pvdns_process.ts";
import { tcpFrame, writeAll } from "./tcp_frames.ts";
import { bigTxt, buildQuery } from "./wire.ts";

/** Queries one {@linkcode probe} sends: two names, over UDP and TCP. */
export const PROBES_PER_ROUND = 4;

/** dnsmasq for the fuzz bed: its records, NXDOMAIN for every other name, no query log. */
export async function startFuzzUpstream(): Promise<Dnsmasq> {
  return await startDnsmasq({
    address: loopbackAddress(),
    logQueries: false,
    records: [
      { name: FUZZ_NAMES.upstream, type: "A", value: FUZZ_NAMES.upstreamA },
      { name: FUZZ_NAMES.upstream, type: "AAAA", value: "fd09::1" },
      { name: FUZZ_NAMES.bigTxt, type: "TXT", value: bigTxt("f") },
    ],
    extraArgs: ["--local=/#/"],
  });
}

/** A running pvdns under fuzz. */
export interface FuzzBed {
  readonly label: string;
  readonly address: string;
  readonly port: number;
  /** What is wrong with the server now: it exited, or it logged an internal error. */
  problems(): string[];
  /** Stops the server. */
  stop(): Promise<unknown>;
}

const BAD_LOG = /internal error|uncaught|panicked|stopped:|receive failed|accept failed/i;

/** Starts `pvdns serve --udp-listener MODE` in front of `upstream`, with a local-answer rule. */
export async function startFuzzBed(
  upstream: Dnsmasq,
  udpListener: "mmsg" | "deno",
): Promise<FuzzBed> {
  const address = loopbackAddress();
  const pvdns = await startPvdns({
    args: ["--udp-listener", udpListener],
    config: {
      listen: [`${address}:53`],
      pvds: [{
        id: "fuzz.example",
        sourceAddresses: [loopbackAddress({ port: 0 })],
        servers: [upstream.hostPort],
        // Zones and prefixes route names and reverse names to it (the router's other paths).
        dnsZones: ["fuzz.test", "home.arpa"],
        prefixes: ["10.9.0.0/16", "fd09::/16"],
        default: true,
      }],
      rules: [
        {
          match: { suffix: FUZZ_NAMES.local },
          action: "answer",
          answer: { A: [FUZZ_NAMES.localA], TXT: ["fuzz"] },
        },
        {
          match: { suffix: FUZZ_NAMES.alias },
          action: "answer",
          answer: { CNAME: FUZZ_NAMES.upstream },
        },
        { match: { suffix: FUZZ_NAMES.blocked }, action: "nxdomain" },
        { match: { suffix: FUZZ_NAMES.refused }, action: "refuse" },
      ],
      upstream: { timeoutMs: 500, deadlineMs: 1000 },
    },
  });
  let exit: string | undefined;
  pvdns.exited.then((s) => exit = `pvdns exited (code ${s.code}, signal ${s.signal})`);
  let seen = 0;
  const bad: string[] = [];
  return {
    label: udpListener,
    address,
    port: 53,
    stop: () => pvdns.stop(),
    problems() {
      const lines = pvdns.output();
      for (; seen < lines.length; seen++) {
        if (BAD_LOG.test(lines[seen]!) && bad.length < 10) bad.push(`logged: ${lines[seen]}`);
      }
      return exit ? [exit, ...bad] : [...bad];
    },
  };
}

/** Reads length-prefixed messages until the peer closes; says how the stream ended. */
export async function readFrames(
  conn: Deno.TcpConn,
  onFrame: (frame: Uint8Array) => void,
): Promise<"eof" | "partial" | "reset"> {
  let buf = new Uint8Array(0);
  const chunk = new Uint8Array(65537);
  for (;;) {
    let n: number | null;
    try {
      n = await conn.read(chunk);
    } catch {
      return "reset";
    }
    if (n === null) return buf.length ? "partial" : "eof";
    const next = new Uint8Array(buf.length + n);
    next.set(buf);
    next.set(chunk.subarray(0, n), buf.length);
    buf = next;
    while (buf.length >= 2 && buf.length >= 2 + ((buf[0]! << 8) | buf[1]!)) {
      const len = (buf[0]! << 8) | buf[1]!;
      onFrame(buf.slice(2, 2 + len));
      buf = buf.subarray(2 + len);
    }
  }
}

async function udpExchange(address: string, query: Uint8Array): Promise<Uint8Array | null> {
  const sock = Deno.listenDatagram({
    transport: "udp",
    hostname: loopbackAddress({ port: 0 }),
    port: 0,
  });
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await sock.send(query, { transport: "udp", hostname: address, port: 53 });
    const got = sock.receive().then(([d]) => d, () => null);
    return await Promise.race([
      got,
      new Promise<null>((r) => timer = setTimeout(() => r(null), 2000)),
    ]);
  } finally {
    clearTimeout(timer);
    sock.close();
  }
}

async function tcpExchange(address: string, query: Uint8Array): Promise<Uint8Array | null> {
  const conn = await Deno.connect({ hostname: address, port: 53, transport: "tcp" });
  let reply: Uint8Array | null = null;
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await writeAll(conn, tcpFrame(query));
    const reading = readFrames(conn, (f) => reply ??= f);
    await conn.closeWrite();
    await Promise.race([reading, new Promise((r) => timer = setTimeout(r, 3000))]);
  } catch {
    /* reply stays null */
  } finally {
    clearTimeout(timer);
    conn.close();
  }
  return reply;
}

/**
 * Asks the two known names over UDP and TCP ({@linkcode PROBES_PER_ROUND} queries); returns what
 * was wrong, nothing when all were answered right.
 */
export async function probe(bed: FuzzBed): Promise<string[]> {
  const wrong: string[] = [];
  const a = (r: Uint8Array) => Array.from(r).join(".");
  for (
    const [name, want] of [[FUZZ_NAMES.local, FUZZ_NAMES.localA], [
      FUZZ_NAMES.upstream,
      FUZZ_NAMES.upstreamA,
    ]]
  ) {
    for (const transport of ["udp", "tcp"] as const) {
      const query = buildQuery(0x4242, name!, 1);
      let reply: Uint8Array | null = null;
      for (let attempt = 0; attempt < 3 && !reply; attempt++) {
        reply = transport === "udp"
          ? await udpExchange(bed.address, query)
          : await tcpExchange(bed.address, query);
      }
      if (!reply) {
        wrong.push(`${bed.label}: no answer to ${name} A over ${transport}`);
        continue;
      }
      const problem = checkReply(query, reply, transport);
      const got = problem
        ? []
        : parseStrict(reply).answers.filter((r) => r.type === 1).map((r) => a(r.rdata));
      if (problem || got.join() !== want) {
        wrong.push(
          `${bed.label}: ${name} A over ${transport}: ${problem ?? `got [${got}]`}: ${hex(reply)}`,
        );
      }
    }
  }
  return wrong;
}

/**
 * A second, independent DNS client: Python's dnspython (Debian's python3-dnspython, run with
 * `/usr/bin/python3` so a pyenv or venv `python3` on PATH does not shadow it), plus raw-packet
 * senders written directly against Deno's sockets for malformed-input tests.
 *
 * @module
 */

import { exec } from "./exec.ts";

/** Interpreter with Debian's dnspython. */
export const PYTHON = "/usr/bin/python3";

/** One record from a dnspython answer. */
export interface PyRecord {
  /** Owner name with trailing dot. */
  name: string;
  ttl: number;
  type: string;
  /** Presentation form of the rdata. */
  data: string;
  /** TXT only: the character-strings, decoded as Latin-1. */
  strings?: string[];
}

/** A dnspython reply. */
export interface PyAnswer {
  /** `NOERROR`, `NXDOMAIN`, …, or `TIMEOUT`, or `ERROR` (see `error`). */
  rcode: string;
  id: number;
  /** Header flags, lower case (`qr`, `aa`, `tc`, `rd`, `ra` …). */
  flags: string[];
  answers: PyRecord[];
  authority: PyRecord[];
  /** Reply size in bytes. */
  size: number;
  /** Question name as echoed by the server. */
  question?: string;
  /** EDNS version of the reply, -1 without OPT. */
  edns: number;
  /** Exception text when `rcode` is `ERROR`. */
  error?: string;
}

/** Options of {@linkcode dnspythonQuery}. */
export interface DnspythonOptions {
  server: string;
  /** @default 53 */
  port?: number;
  name: string;
  /** @default "A" */
  type?: string;
  /** @default false */
  tcp?: boolean;
  /** `false`: no OPT record; `true`: EDNS(0) with 1232; a number: that payload size. @default true */
  edns?: boolean | number;
  /** Set the DO bit (implies EDNS). */
  dnssecOk?: boolean;
  /** Source address to bind. */
  source?: string;
  /** Seconds dnspython waits. @default 2 */
  timeoutSeconds?: number;
  /** Run inside this network namespace. */
  netns?: string;
}

const SCRIPT = `
import json, sys
import dns.exception, dns.flags, dns.message, dns.query, dns.rcode, dns.rdatatype
a = json.loads(sys.argv[1])
edns = a["edns"]
kw = {}
if edns is False:
    kw["use_edns"] = False
else:
    kw["use_edns"] = 0
    kw["payload"] = 1232 if edns is True else int(edns)
    kw["want_dnssec"] = bool(a["dnssecOk"])
q = dns.message.make_query(a["name"], a["type"], **kw)
def recs(section):
    out = []
    for rrset in section:
        for rd in rrset:
            r = {"name": rrset.name.to_text(), "ttl": rrset.ttl,
                 "type": dns.rdatatype.to_text(rrset.rdtype), "data": rd.to_text()}
            if rrset.rdtype == dns.rdatatype.TXT:
                r["strings"] = [s.decode("latin-1") for s in rd.strings]
            out.append(r)
    return out
try:
    if a["tcp"]:
        r = dns.query.tcp(q, a["server"], timeout=a["timeout"], port=a["port"], source=a["source"])
    else:
        r = dns.query.udp(q, a["server"], timeout=a["timeout"], port=a["port"], source=a["source"],
                          raise_on_truncation=False)
except dns.exception.Timeout:
    print(json.dumps({"rcode": "TIMEOUT", "id": -1, "flags": [], "answers": [], "authority": [],
                      "size": 0, "edns": -1}))
    sys.exit(0)
except Exception as e:
    print(json.dumps({"rcode": "ERROR", "id": -1, "flags": [], "answers": [], "authority": [],
                      "size": 0, "edns": -1, "error": type(e).__name__ + ": " + str(e)}))
    sys.exit(0)
print(json.dumps({
    "rcode": dns.rcode.to_text(r.rcode()), "id": r.id,
    "flags": dns.flags.to_text(r.flags).lower().split(),
    "answers": recs(r.answer), "authority": recs(r.authority),
    "size": len(r.to_wire()), "edns": r.edns,
    "question": r.question[0].name.to_text() if r.question else None,
}))
`;

/**
 * Ask `server` one question with dnspython over UDP or TCP.
 *
 * dnspython itself checks that the reply's ID and question match the query; a mismatch comes
 * back as `rcode: "ERROR"`.
 */
export async function dnspythonQuery(options: DnspythonOptions): Promise<PyAnswer> {
  const args = {
    server: options.server,
    port: options.port ?? 53,
    name: options.name,
    type: options.type ?? "A",
    tcp: options.tcp ?? false,
    edns: options.edns ?? true,
    dnssecOk: options.dnssecOk ?? false,
    source: options.source ?? null,
    timeout: options.timeoutSeconds ?? 2,
  };
  const r = await exec([PYTHON, "-c", SCRIPT, JSON.stringify(args)], {
    netns: options.netns,
    timeoutMs: (args.timeout + 8) * 1000,
  });
  const line = r.stdout.trim().split("\n").pop() ?? "";
  try {
    return JSON.parse(line) as PyAnswer;
  } catch {
    throw new Error(`dnspython failed (exit ${r.code}): ${r.stdout}\n${r.stderr}`);
  }
}

/** Options of {@linkcode sendRawUdp} and {@linkcode sendRawTcp}. */
export interface RawSendOptions {
  server: string;
  /** @default 53 */
  port?: number;
  /** The packet, sent as is (for TCP the 2-byte length prefix is added). */
  bytes: Uint8Array;
  /** How long to wait for a reply. @default 1500 */
  timeoutMs?: number;
  /** Source address to bind (port chosen by the kernel). @default "127.0.0.1" */
  source?: string;
}

/**
 * Send one UDP datagram and return the first datagram that comes back from `server:port`, or
 * `null` when nothing came within `timeoutMs` (a dropped packet).
 */
export async function sendRawUdp(options: RawSendOptions): Promise<Uint8Array | null> {
  const port = options.port ?? 53;
  const sock = Deno.listenDatagram({
    transport: "udp",
    hostname: options.source ?? "127.0.0.1",
    port: 0,
  });
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await sock.send(options.bytes, { transport: "udp", hostname: options.server, port });
    const timeout = new Promise<null>((resolve) => {
      timer = setTimeout(() => resolve(null), options.timeoutMs ?? 1500);
    });
    const receive = (async () => {
      for (let i = 0; i < 16; i++) {
        const [data, from] = await sock.receive();
        const addr = from as Deno.NetAddr;
        if (addr.hostname === options.server && addr.port === port) return data;
      }
      return null;
    })();
    receive.catch(() => {}); // rejected when the socket closes below
    return await Promise.race([receive, timeout]);
  } finally {
    clearTimeout(timer);
    sock.close();
  }
}

/**
 * Open a TCP connection, send `bytes` with a 2-byte length prefix, and return the first
 * length-prefixed reply, or `null` when the server closed the connection or sent nothing within
 * `timeoutMs`.
 */
export async function sendRawTcp(options: RawSendOptions): Promise<Uint8Array | null> {
  const conn = await Deno.connect({
    hostname: options.server,
    port: options.port ?? 53,
  });
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const framed = new Uint8Array(options.bytes.length + 2);
    new DataView(framed.buffer).setUint16(0, options.bytes.length);
    framed.set(options.bytes, 2);
    await conn.write(framed);
    const timeout = new Promise<null>((resolve) => {
      timer = setTimeout(() => resolve(null), options.timeoutMs ?? 1500);
    });
    const read = (async () => {
      let buf = new Uint8Array(0);
      const chunk = new Uint8Array(65537);
      for (let i = 0; i < 1000; i++) {
        if (buf.length >= 2) {
          const len = (buf[0]! << 8) | buf[1]!;
          if (buf.length >= len + 2) return buf.slice(2, len + 2);
        }
        const n = await conn.read(chunk);
        if (n === null) return null;
        const next = new Uint8Array(buf.length + n);
        next.set(buf);
        next.set(chunk.subarray(0, n), buf.length);
        buf = next;
      }
      return null;
    })();
    read.catch(() => {});
    return await Promise.race([read, timeout]);
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* closed */ }
  }
}

/** Header fields of a raw DNS message (no validation beyond length). */
export function parseHeader(bytes: Uint8Array): {
  id: number;
  qr: boolean;
  opcode: number;
  tc: boolean;
  rcode: number;
  qdcount: number;
  ancount: number;
} {
  if (bytes.length < 12) throw new Error(`short DNS message (${bytes.length} bytes)`);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const flags = v.getUint16(2);
  return {
    id: v.getUint16(0),
    qr: (flags & 0x8000) !== 0,
    opcode: (flags >> 11) & 0xf,
    tc: (flags & 0x0200) !== 0,
    rcode: flags & 0xf,
    qdcount: v.getUint16(4),
    ancount: v.getUint16(6),
  };
}

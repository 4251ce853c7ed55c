/**
 * The listener fuzz harness, shared by `tests/listen/listener_fuzz_test.ts` (short, in the
 * default run) and `bench/fuzz.ts` (a million inputs): a real `pvdns serve` process per UDP
 * listener implementation (`--udp-listener mmsg` and `deno`), in front of a real dnsmasq, with a
 * local-answer rule; hostile inputs from {@linkcode FuzzInputs} sent over UDP and TCP in batches;
 * every reply judged by {@linkcode checkReply}; after each batch the process must still be alive,
 * must not have logged an internal error, and must answer valid queries over UDP and TCP.
 *
 * The bed (processes, liveness, probes) is in fuzz_bed.ts, the inputs in fuzz_inputs.ts, the
 * judge in fuzz_check.ts.
 *
 * @module
 */

import { sleep } from "./exec.ts";
import {
  type FuzzBed,
  probe,
  PROBES_PER_ROUND,
  readFrames,
  startFuzzBed,
  startFuzzUpstream,
} from "./fuzz_bed.ts";
import { ALLOWED_RCODES, checkReply, hex, parseStrict } from "./fuzz_check.ts";
import { FuzzInputs, type TcpCase, tcpStream } from "./fuzz_inputs.ts";
import { loopbackAddress } from "./loopback.ts";

export type { FuzzBed } from "./fuzz_bed.ts";

/** Counters of a fuzz run. */
export interface FuzzStats {
  inputs: number;
  udpInputs: number;
  tcpMessages: number;
  tcpConnections: number;
  replies: number;
  noReplies: number;
  /** Replies that came after the input had been counted as unanswered. */
  late: number;
  byRcode: Record<string, number>;
  byMutator: Record<string, number>;
  /** UDP inputs left unanswered, by their (first) mutator. */
  noReplyByMutator: Record<string, number>;
  probes: number;
  /** Every failure, counted; the first few kept in full. */
  failureCount: number;
  failures: string[];
}

/** Fresh zeroed counters. */
export function newStats(): FuzzStats {
  return {
    inputs: 0,
    udpInputs: 0,
    tcpMessages: 0,
    tcpConnections: 0,
    replies: 0,
    noReplies: 0,
    late: 0,
    byRcode: {},
    byMutator: {},
    noReplyByMutator: {},
    probes: 0,
    failureCount: 0,
    failures: [],
  };
}

function bump(r: Record<string, number>, key: string, by: number): void {
  r[key] = (r[key] ?? 0) + by;
}

function fail(stats: FuzzStats, what: string): void {
  stats.failureCount++;
  if (stats.failures.length < 20) stats.failures.push(what);
}

function countReply(stats: FuzzStats, reply: Uint8Array): void {
  stats.replies++;
  const rcode = reply.length >= 4 ? reply[3]! & 0xf : -1;
  let name = ALLOWED_RCODES.get(rcode) ?? `rcode ${rcode}`;
  try {
    name = ALLOWED_RCODES.get(parseStrict(reply).rcode) ?? name; // BADVERS is in the OPT
  } catch { /* counted as a failure by the caller */ }
  if (reply.length >= 4 && reply[2]! & 0x02) name += "+TC";
  stats.byRcode[name] = (stats.byRcode[name] ?? 0) + 1;
}

/** The counters as a few lines of text. */
export function formatStats(s: FuzzStats): string {
  const sorted = (r: Record<string, number>) =>
    Object.entries(r).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(", ");
  return [
    `inputs ${s.inputs} (udp ${s.udpInputs}, tcp ${s.tcpMessages} messages on ${s.tcpConnections} connections)`,
    `replies ${s.replies}, no reply ${s.noReplies} (late replies ${s.late}), probes ${s.probes}`,
    `by rcode: ${sorted(s.byRcode)}`,
    `by mutator: ${sorted(s.byMutator)}`,
    `no reply (udp) by mutator: ${sorted(s.noReplyByMutator)}`,
    `failures ${s.failureCount}${s.failures.map((f) => `\n  - ${f}`).join("")}`,
  ].join("\n");
}

/** How hard to push. */
export interface FuzzPace {
  /** Inputs sent within the last `youngMs` without a reply, at most. @default 128 */
  readonly window?: number;
  /** @default 100 */
  readonly youngMs?: number;
  /** An input unanswered this long counts as not answered. @default 1500 */
  readonly noReplyMs?: number;
  /** TCP connections at once. @default 12 */
  readonly tcpConcurrency?: number;
}

interface Sent {
  readonly bytes: Uint8Array;
  readonly mutator: string;
  readonly at: number;
  young: boolean;
}

/** Sends `count` UDP inputs and judges every reply. */
export async function fuzzUdp(
  bed: FuzzBed,
  gen: FuzzInputs,
  count: number,
  stats: FuzzStats,
  pace: FuzzPace = {},
): Promise<void> {
  const window = pace.window ?? 128, youngMs = pace.youngMs ?? 100;
  const noReplyMs = pace.noReplyMs ?? 1500;
  const src = loopbackAddress({ port: 0 });
  const sock = Deno.listenDatagram({ transport: "udp", hostname: src, port: 0 });
  const shortSock = Deno.listenDatagram({ transport: "udp", hostname: src, port: 0 });
  const to: Deno.NetAddr = { transport: "udp", hostname: bed.address, port: bed.port };
  const pending = new Map<number, Sent>();
  const expired = new Map<number, Sent>();
  let young = 0;
  let wake: (() => void) | undefined;
  const notify = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };

  const receiving = (async () => {
    for (;;) {
      let data: Uint8Array;
      try {
        [data] = await sock.receive();
      } catch {
        return; // closed
      }
      const id = data.length >= 2 ? (data[0]! << 8) | data[1]! : -1;
      let sent = pending.get(id);
      if (sent) {
        pending.delete(id);
        if (sent.young) young--;
        notify();
      } else if ((sent = expired.get(id))) {
        expired.delete(id);
        stats.late++;
        stats.noReplies--;
        bump(stats.noReplyByMutator, sent.mutator.split("+")[0]!, -1);
      } else {
        fail(stats, `${bed.label} udp: reply with an ID nothing is waiting for: ${hex(data)}`);
        continue;
      }
      countReply(stats, data);
      const problem = checkReply(sent.bytes, data, "udp");
      if (problem) {
        fail(
          stats,
          `${bed.label} udp (${sent.mutator}): ${problem}\n    input ${
            hex(sent.bytes)
          }\n    reply ${hex(data)}`,
        );
      }
    }
  })();
  let shortSent = 0, shortReplies = 0;
  const receivingShort = (async () => {
    for (;;) {
      let data: Uint8Array;
      try {
        [data] = await shortSock.receive();
      } catch {
        return;
      }
      shortReplies++;
      countReply(stats, data);
      const problem = checkReply(new Uint8Array(0), data, "udp");
      if (problem) fail(stats, `${bed.label} udp (short input): ${problem}: ${hex(data)}`);
    }
  })();

  // Entries are in send order: the sweep stops at the first one too new to change.
  const sweep = () => {
    const now = performance.now();
    for (const [id, s] of pending) {
      if (now - s.at < youngMs) break;
      if (s.young) {
        s.young = false;
        young--;
      }
      if (now - s.at >= noReplyMs) {
        pending.delete(id);
        expired.set(id, s);
        stats.noReplies++;
        bump(stats.noReplyByMutator, s.mutator.split("+")[0]!, 1);
      }
    }
    if (expired.size > 30_000) expired.delete(expired.keys().next().value!);
    notify();
  };
  const sweeper = setInterval(sweep, 10);

  let nextId = gen.int(65536);
  try {
    for (let i = 0; i < count; i++) {
      while (young >= window) await new Promise<void>((r) => wake = r);
      const input = gen.next();
      for (const name of new Set(input.mutator.split("+"))) {
        stats.byMutator[name] = (stats.byMutator[name] ?? 0) + 1;
      }
      stats.inputs++;
      stats.udpInputs++;
      const bytes = input.bytes;
      if (bytes.length < 2) {
        shortSent++;
        await shortSock.send(bytes, to);
        continue;
      }
      const id = nextId++ & 0xffff;
      if (pending.has(id)) { // not expected: 65,536 sends ago, or with a reply lost for good
        pending.delete(id);
        stats.noReplies++;
      }
      expired.delete(id);
      bytes[0] = id >> 8;
      bytes[1] = id & 0xff;
      pending.set(id, { bytes, mutator: input.mutator, at: performance.now(), young: true });
      young++;
      await sock.send(bytes, to);
    }
    while (pending.size > 0) await new Promise<void>((r) => wake = r);
    await sleep(50); // any reply to a short input has long arrived; a duplicate would show now
  } finally {
    clearInterval(sweeper);
    sock.close();
    shortSock.close();
    await Promise.all([receiving, receivingShort]);
  }
  stats.noReplies += Math.max(0, shortSent - shortReplies);
}

/** The messages a server reads from `stream` (a last, incomplete one is not read). */
function serverFrames(stream: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let off = 0; off + 2 <= stream.length;) {
    const len = (stream[off]! << 8) | stream[off + 1]!;
    if (off + 2 + len > stream.length) break;
    out.push(stream.subarray(off + 2, off + 2 + len));
    off += 2 + len;
  }
  return out;
}

/** A TCP case with its IDs stamped and its writes planned, ready to run. */
interface PlannedCase {
  readonly c: TcpCase;
  /** The messages the server will read from the stream (a lying prefix reshapes them). */
  readonly frames: readonly Uint8Array[];
  readonly pieces: readonly Uint8Array[];
}

/** Plans one case from `gen`; done in order before any runs, so a seed replays the same bytes. */
function planTcp(gen: FuzzInputs, firstId: number): PlannedCase {
  const c = gen.nextTcp();
  c.messages.forEach((m, i) => {
    if (m.length < 2) return;
    const id = (firstId + i) & 0xffff;
    m[0] = id >> 8;
    m[1] = id & 0xff;
  });
  const stream = tcpStream(c);
  const pieces: Uint8Array[] = [];
  if (c.writes === "one") pieces.push(stream);
  else if (c.writes === "bytewise") {
    for (let i = 0; i < stream.length; i++) pieces.push(stream.subarray(i, i + 1));
  } else if (c.writes === "per-message") {
    for (let off = 0, i = 0; off < stream.length; off += 2 + c.messages[i++]!.length) {
      pieces.push(stream.subarray(off, off + 2 + c.messages[i]!.length));
    }
  } else {
    for (let off = 0; off < stream.length;) {
      const n = 1 + gen.int(64);
      pieces.push(stream.subarray(off, off + n));
      off += n;
    }
  }
  return { c, frames: serverFrames(stream), pieces };
}

/** Runs one TCP case on its own connection and judges what comes back. */
async function runTcp(bed: FuzzBed, plan: PlannedCase, stats: FuzzStats): Promise<void> {
  const { c, frames, pieces } = plan;
  const byId = new Map<number, Uint8Array[]>();
  let hasShort = false;
  for (const f of frames) {
    if (f.length < 2) hasShort = true;
    else byId.set((f[0]! << 8) | f[1]!, [...(byId.get((f[0]! << 8) | f[1]!) ?? []), f]);
  }
  stats.tcpConnections++;
  stats.tcpMessages += c.messages.length;
  stats.inputs += c.messages.length;
  stats.byMutator[`tcp:${c.kind}`] = (stats.byMutator[`tcp:${c.kind}`] ?? 0) + 1;
  let replies = 0;
  const conn = await Deno.connect({ hostname: bed.address, port: bed.port, transport: "tcp" });
  const reading = readFrames(conn, (frame) => {
    const id = frame.length >= 2 ? (frame[0]! << 8) | frame[1]! : -1;
    const inputs = byId.get(id) ?? (hasShort ? [new Uint8Array(0)] : []);
    replies++;
    countReply(stats, frame);
    if (!inputs.length) {
      return fail(stats, `${bed.label} tcp (${c.kind}): reply with an unknown ID: ${hex(frame)}`);
    }
    const problems = inputs.map((input) => checkReply(input, frame, "tcp"));
    const i = problems.findIndex((p) => p === undefined);
    if (i >= 0) inputs.splice(i, 1);
    else {
      const [problem, input] = [problems[0], inputs[0]!];
      fail(
        stats,
        `${bed.label} tcp (${c.kind}): ${problem}\n    input ${hex(input)}\n    reply ${
          hex(frame)
        }`,
      );
    }
  });
  let ended: "eof" | "partial" | "reset" | "timeout" = "eof";
  try {
    // A slow client, but one that finishes within about a second (servers time out slow-loris).
    const delayMs = pieces.length * c.delayMs > 800 ? 0 : c.delayMs;
    for (const p of pieces) {
      if (p.length === 0) continue;
      await conn.write(p);
      if (delayMs) await sleep(delayMs);
    }
    if (c.cutAt !== undefined) {
      conn.close(); // closed mid-message, without reading anything
      await reading;
    } else {
      await conn.closeWrite();
      let timer: ReturnType<typeof setTimeout> | undefined;
      ended = await Promise.race([
        reading,
        new Promise<"timeout">((r) => timer = setTimeout(() => r("timeout"), 5000)),
      ]);
      clearTimeout(timer);
      conn.close();
      await reading;
    }
  } catch {
    // The server closed first (it may, on a message it cannot read): not a failure.
    try {
      conn.close();
    } catch { /* closed */ }
    await reading;
  }
  if (ended === "timeout") {
    fail(stats, `${bed.label} tcp (${c.kind}): still open 5 s after the client's half-close`);
  } else if (ended === "partial") {
    fail(stats, `${bed.label} tcp (${c.kind}): the server closed in the middle of a reply`);
  }
  stats.noReplies += Math.max(0, c.messages.length - replies);
}

/** Sends at least `count` messages over TCP, a few connections at once, and judges the replies. */
export async function fuzzTcp(
  bed: FuzzBed,
  gen: FuzzInputs,
  count: number,
  stats: FuzzStats,
  pace: FuzzPace = {},
): Promise<void> {
  const plans: PlannedCase[] = [];
  let nextId = gen.int(65536);
  for (let sent = 0; sent < count;) {
    const plan = planTcp(gen, nextId);
    plans.push(plan);
    sent += plan.c.messages.length;
    nextId += plan.c.messages.length;
  }
  let next = 0;
  const worker = async () => {
    while (next < plans.length) await runTcp(bed, plans[next++]!, stats);
  };
  await Promise.all([...Array(pace.tcpConcurrency ?? 12)].map(worker));
}

/** What {@linkcode runFuzz} does. */
export interface FuzzPlan {
  readonly seed: number;
  /** UDP inputs per listener implementation. */
  readonly udpInputs: number;
  /** TCP messages per listener implementation. */
  readonly tcpInputs: number;
  /** Batches per implementation; each ends with the liveness checks and the probes. */
  readonly batches: number;
  /** @default ["mmsg", "deno"] */
  readonly listeners?: readonly ("mmsg" | "deno")[];
  readonly pace?: FuzzPace;
  /** Progress lines. */
  readonly log?: (line: string) => void;
}

/** The whole campaign: dnsmasq, then each listener implementation in turn, batch by batch. */
export async function runFuzz(plan: FuzzPlan): Promise<FuzzStats> {
  const stats = newStats();
  const log = plan.log ?? (() => {});
  const gen = new FuzzInputs(plan.seed);
  const upstream = await startFuzzUpstream();
  try {
    for (const mode of plan.listeners ?? ["mmsg", "deno"]) {
      const bed = await startFuzzBed(upstream, mode);
      try {
        const initial = await probe(bed);
        stats.probes += PROBES_PER_ROUND;
        for (const w of initial) fail(stats, `before fuzzing: ${w}`);
        for (let b = 0; b < plan.batches; b++) {
          const share = (n: number) => Math.ceil(n / plan.batches);
          const t0 = performance.now();
          await fuzzUdp(bed, gen, share(plan.udpInputs), stats, plan.pace);
          const t1 = performance.now();
          await fuzzTcp(bed, gen, share(plan.tcpInputs), stats, plan.pace);
          const t2 = performance.now();
          const wrong = [...bed.problems(), ...(await probe(bed)), ...bed.problems()];
          stats.probes += PROBES_PER_ROUND;
          for (const w of new Set(wrong)) fail(stats, `after batch ${b + 1} (${mode}): ${w}`);
          log(
            `${mode} batch ${b + 1}/${plan.batches}: ${stats.inputs} inputs so far, ` +
              `udp ${Math.round(t1 - t0)} ms, tcp ${Math.round(t2 - t1)} ms, ` +
              `checks ${Math.round(performance.now() - t2)} ms, failures ${stats.failureCount}`,
          );
          if (bed.problems().some((p) => p.startsWith("pvdns exited"))) break;
        }
      } finally {
        await bed.stop();
      }
    }
  } finally {
    await upstream.stop();
  }
  return stats;
}

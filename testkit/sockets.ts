/**
 * Which sockets this test process holds, read from the kernel with `ss` (iproute2): the way to
 * prove that a transport really released what it opened, and how many connections it keeps.
 *
 * Only sockets owned by this process (`ss -p` names the pid) and bound to the given local
 * address count, so servers started by the same test (on other addresses) and orphaned kernel
 * sockets (FIN-WAIT, TIME-WAIT: no longer held by any process) are left out.
 *
 * @module
 */

import { execOk, sleep } from "./exec.ts";

/** One socket as `ss` shows it. */
export interface HeldSocket {
  readonly proto: "tcp" | "udp";
  /** `ESTAB`, `UNCONN`, `SYN-SENT` … */
  readonly state: string;
  /** Local `ADDR:PORT`. */
  readonly local: string;
  /** Peer `ADDR:PORT` (`*` parts for an unconnected socket). */
  readonly peer: string;
}

function splitHostPort(text: string): [string, string] {
  const i = text.lastIndexOf(":");
  return [text.slice(0, i).replace(/^\[|\]$/g, "").replace(/%.*$/, ""), text.slice(i + 1)];
}

/**
 * The TCP and UDP sockets this process holds with local address `source`.
 *
 * @example
 * const held = await socketsOf("127.64.0.9"); // [{ proto: "tcp", state: "ESTAB", … }]
 */
export async function socketsOf(source: string): Promise<HeldSocket[]> {
  const out = await execOk(["ss", "-H", "-t", "-u", "-a", "-n", "-p"], { timeoutMs: 5000 });
  const mine = `pid=${Deno.pid},`;
  const held: HeldSocket[] = [];
  for (const line of out.split("\n")) {
    if (!line.includes(mine)) continue;
    const f = line.trim().split(/\s+/);
    if (f.length < 6) continue;
    const [proto, state, , , local, peer] = f as [string, string, string, string, string, string];
    if (splitHostPort(local)[0] !== source) continue;
    held.push({ proto: proto as "tcp" | "udp", state, local, peer });
  }
  return held;
}

/**
 * Polls {@linkcode socketsOf} until `pred` holds (at most `timeoutMs`); returns the last list
 * either way, so that the caller asserts on it.
 */
export async function waitForSockets(
  source: string,
  pred: (held: HeldSocket[]) => boolean,
  timeoutMs = 3000,
): Promise<HeldSocket[]> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const held = await socketsOf(source);
    if (pred(held) || Date.now() > end) return held;
    await sleep(50);
  }
}

/**
 * Many TCP connections held open at once, from a child python3 (`/usr/bin/python3`, run through
 * `prlimit --nofile` so that it may hold them, whatever the test runner's own limit): the
 * attacker of the descriptor-exhaustion tests. Each target gets `count` connections; with `half`
 * every second one sends the start of a request head and never finishes it.
 *
 * The child reports in JSON lines: once every connection is made (or refused), and once all were
 * closed by the peer, or it was told to release them, or its deadline passed.
 *
 * @module
 */

import { PYTHON } from "./dnspython.ts";

/** One listener to flood. */
export interface FloodTarget {
  readonly host: string;
  readonly port: number;
  readonly count: number;
  /** Bytes every second connection sends first (a head never finished), e.g. `"GET / HTTP/1.1\r\n"`. */
  readonly half?: string;
}

/** What the child saw. */
export interface FloodReport {
  /** Connections made. */
  readonly opened: number;
  /** connect() that failed or timed out. */
  readonly failed: number;
  /** Of those made, closed (EOF or reset) by the peer so far. */
  readonly closedByPeer: number;
}

/** A running flood. */
export interface Flood {
  /** Resolves once every connection was tried. */
  readonly opened: Promise<FloodReport>;
  /** Resolves when all were closed by the peer, or on release, or at the deadline. */
  readonly done: Promise<FloodReport>;
  /** Closes every connection still open (ends the flood); resolves with the final report. */
  release(): Promise<FloodReport>;
}

const SCRIPT = `
import json, selectors, socket, sys, time
targets, deadline = json.loads(sys.argv[1]), time.time() + float(sys.argv[2])
socks, failed = [], 0
for t in targets:
    for i in range(t["count"]):
        try:
            s = socket.create_connection((t["host"], t["port"]), timeout=5)
            if t.get("half") and i % 2 == 1:
                s.send(t["half"].encode())
            s.setblocking(False)
            socks.append(s)
        except OSError:
            failed += 1
def report(closed):
    print(json.dumps({"opened": len(socks), "failed": failed, "closedByPeer": closed}), flush=True)
report(0)
sel = selectors.DefaultSelector()
for s in socks:
    sel.register(s, selectors.EVENT_READ)
sel.register(sys.stdin, selectors.EVENT_READ)
closed, live = 0, len(socks)
while live > 0 and time.time() < deadline:
    stop = False
    for key, _ in sel.select(timeout=0.2):
        if key.fileobj is sys.stdin:
            stop = True
            continue
        try:
            data = key.fileobj.recv(65536)
        except BlockingIOError:
            continue
        except OSError:
            data = b""
        if data:
            continue
        sel.unregister(key.fileobj)
        key.fileobj.close()
        closed += 1
        live -= 1
    if stop:
        break
report(closed)
for s in socks:
    try:
        s.close()
    except OSError:
        pass
`;

/**
 * Starts a flood of `targets`; the child gives up after `deadlineMs` (and is killed 10 s later).
 *
 * @example
 * const flood = startFlood([{ host: "127.64.0.9", port: 9153, count: 2500 }]);
 * await flood.opened;
 * await flood.release();
 */
export function startFlood(
  targets: readonly FloodTarget[],
  options: { deadlineMs?: number; nofile?: number } = {},
): Flood {
  const deadlineMs = options.deadlineMs ?? 60_000;
  const nofile = options.nofile ??
    targets.reduce((n, t) => n + t.count, 0) + 256;
  const child = new Deno.Command("prlimit", {
    args: [
      `--nofile=${nofile}:${nofile}`,
      PYTHON,
      "-c",
      SCRIPT,
      JSON.stringify(targets),
      String(deadlineMs / 1000),
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const killer = setTimeout(() => child.kill("SIGKILL"), deadlineMs + 10_000);
  const reports: FloodReport[] = [];
  const waiters: (() => void)[] = [];
  const stderr = new Response(child.stderr).text();
  const pump = (async () => {
    let rest = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      rest += chunk;
      const lines = rest.split("\n");
      rest = lines.pop() ?? "";
      for (const l of lines) if (l.trim()) reports.push(JSON.parse(l));
      for (const w of waiters.splice(0)) w();
    }
    for (const w of waiters.splice(0)) w();
  })();
  const exited = (async () => {
    const status = await child.status;
    await pump;
    clearTimeout(killer);
    return status;
  })();
  const nth = async (n: number): Promise<FloodReport> => {
    while (reports.length <= n) {
      const ended = await Promise.race([
        exited.then(() => true),
        new Promise<boolean>((r) => waiters.push(() => r(false))),
      ]);
      if (ended && reports.length <= n) {
        throw new Error(`the flood ended without report ${n}: ${await stderr}`);
      }
    }
    return reports[n]!;
  };
  const writer = child.stdin.getWriter();
  let released: Promise<FloodReport> | undefined;
  const done = nth(1);
  done.catch(() => {}); // reported to whoever awaits it
  return {
    opened: nth(0),
    done,
    release() {
      released ??= (async () => {
        await writer.write(new Uint8Array([10])).catch(() => {});
        await writer.close().catch(() => {});
        const r = await done;
        await exited;
        return r;
      })();
      return released;
    },
  };
}

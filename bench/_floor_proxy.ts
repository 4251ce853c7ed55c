/**
 * The runtime's floor: the least a Deno UDP DNS proxy can do per query. It is the reference
 * pvdns's cache-hit CPU cost is measured against (issue 7), not a resolver.
 *
 * - `Deno.listenDatagram` (`--unstable-net`) on `LISTEN:53`, one receive loop, sends not awaited;
 * - a hit is a `Map` lookup keyed by every byte after the query's ID (flags, counts, question,
 *   any OPT), answered with a copy of the stored reply with only the ID rewritten;
 * - a miss goes to the upstream with an ID of ours, from a socket bound to `LISTEN` (port 0); its
 *   reply is stored as is and answered. No TTLs, no validation, no limits: a floor, nothing more.
 *
 * Run: `deno run --allow-net --unstable-net bench/_floor_proxy.ts LISTEN UPSTREAM`; prints
 * `floor: ready` once bound. Stops on SIGTERM/SIGINT (or when killed).
 *
 * @module
 */

const [listen, upstream] = Deno.args;
if (!listen || !upstream) {
  console.error("usage: _floor_proxy.ts LISTEN_ADDR UPSTREAM_ADDR");
  Deno.exit(2);
}

const client = Deno.listenDatagram({ hostname: listen, port: 53, transport: "udp" });
const up = Deno.listenDatagram({ hostname: listen, port: 0, transport: "udp" });
const upstreamAddr: Deno.NetAddr = { transport: "udp", hostname: upstream, port: 53 };

/** Replies by query bytes after the ID. */
const cache = new Map<string, Uint8Array>();
/** Misses waiting for the upstream, by our upstream ID (wraps; old entries are overwritten). */
const pending: ({ addr: Deno.Addr; id0: number; id1: number; key: string } | undefined)[] =
  new Array(65536);
let nextId = 0;

function keyOf(raw: Uint8Array): string {
  return String.fromCharCode.apply(null, raw.subarray(2) as unknown as number[]);
}

function ignore(): void {}

async function serveClients(): Promise<void> {
  for (;;) {
    let raw: Uint8Array, addr: Deno.Addr;
    try {
      [raw, addr] = await client.receive();
    } catch {
      return; // closed
    }
    if (raw.length < 12) continue;
    const key = keyOf(raw);
    const hit = cache.get(key);
    if (hit !== undefined) {
      const out = hit.slice();
      out[0] = raw[0]!;
      out[1] = raw[1]!;
      client.send(out, addr).catch(ignore);
      continue;
    }
    const id = nextId;
    nextId = (nextId + 1) & 0xffff;
    pending[id] = { addr, id0: raw[0]!, id1: raw[1]!, key };
    const q = raw.slice();
    q[0] = id >> 8;
    q[1] = id & 0xff;
    up.send(q, upstreamAddr).catch(ignore);
  }
}

async function serveUpstream(): Promise<void> {
  for (;;) {
    let raw: Uint8Array;
    try {
      [raw] = await up.receive();
    } catch {
      return;
    }
    if (raw.length < 12) continue;
    const id = raw[0]! << 8 | raw[1]!;
    const p = pending[id];
    if (p === undefined) continue;
    pending[id] = undefined;
    cache.set(p.key, raw.slice());
    raw[0] = p.id0;
    raw[1] = p.id1;
    client.send(raw, p.addr).catch(ignore);
  }
}

const stop = () => {
  client.close();
  up.close();
};
Deno.addSignalListener("SIGTERM", stop);
Deno.addSignalListener("SIGINT", stop);
console.log("floor: ready");
await Promise.all([serveClients(), serveUpstream()]);
Deno.exit(0);

/**
 * PvDs discovered from Router Advertisements (config `"discovery": { "ra": [IFACE, …] }`).
 *
 * ```
 * raw ICMPv6 socket per interface (icmp6_socket.ts)
 *   → hop limit 255? link-local source? right interface?  else dropped (logged once per reason)
 *   → decodeRa (ra_codec.ts)                                rejected RAs logged with the reason
 *   → RaPvdTable.apply (ra_pvds.ts): explicit / implicit PvD, per-element lifetimes
 *   → `ip -j addr show dev IFACE`: source addresses; the PvD config (ra_pvd_config.ts)
 *   → InfoScheduler (info_scheduler.ts): /.well-known/pvd when H=1
 *   → publish(every RA PvD) when the set changed
 * ```
 *
 * All work on the table happens in one queue, so an RA, an expiry, an address refresh and a
 * fetched document never interleave. One timer fires at the next lifetime end; one refreshes
 * the interfaces' addresses every 10 s (a SLAAC address appears after the RA that made it); one
 * watches each interface's index every 5 s (an interface that went away or came back ends the
 * network attachment: its PvDs are dropped and its socket reopened).
 *
 * @module
 */

import type { PvdConfig } from "../config/types.ts";
import { createInfoFetcher, type InfoFetcher } from "./additional_info.ts";
import {
  interfaceIndex as realInterfaceIndex,
  openRaSocket,
  type RaSocket,
  type RaSocketFactory,
  type ReceivedPacket,
} from "./icmp6_socket.ts";
import { InfoScheduler, realTimers, type Timers } from "./info_scheduler.ts";
import { type IpRunner, runIp as realRunIp } from "../host/ip_command.ts";
import { decodeRa } from "./ra_codec.ts";
import { type IfAddr, parseIpAddr, raPvdConfig } from "./ra_pvd_config.ts";
import { type RaPvd, RaPvdTable } from "./ra_pvds.ts";

/** Options of {@linkcode startRaDiscovery}. */
export interface RaDiscoveryOptions {
  /** Interfaces to listen on (config `discovery.ra`). */
  readonly interfaces: readonly string[];
  /** Called with the complete current set of RA-origin PvDs after every change. */
  readonly publish: (pvds: readonly PvdConfig[]) => void;
  /** Top-level `caFile`: extra trust for `/.well-known/pvd`. */
  readonly caFile?: string;
  /** One line per event worth knowing. @default console.error with a `pvdns: ra: ` prefix */
  readonly log?: (line: string) => void;
  /** Clock, ms since the epoch. @default Date.now */
  readonly now?: () => number;
  /** Timers. @default the global ones */
  readonly timers?: Timers;
  /** Uniform in [0, 1). @default Math.random */
  readonly random?: () => number;
  /** Raw socket per interface. @default openRaSocket (FFI) */
  readonly openSocket?: RaSocketFactory;
  /** Interface index, 0 when missing. @default if_nametoindex (FFI) */
  readonly interfaceIndex?: (iface: string) => number;
  /** `ip -j …`. @default runIp */
  readonly runIp?: IpRunner;
  /** The `/.well-known/pvd` fetcher. @default createInfoFetcher({ caFile }) */
  readonly fetcher?: InfoFetcher;
  /** How often interface addresses are re-read while PvDs exist, ms. @default 10000 */
  readonly addressRefreshMs?: number;
  /** How often interfaces are checked, and a failed socket retried, ms. @default 5000 */
  readonly watchMs?: number;
}

/** A running discovery. */
export interface RaDiscovery {
  /** Stops listening, cancels every timer and fetch; `publish` is not called afterwards. */
  close(): Promise<void>;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === "object" && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/**
 * Starts listening for RAs on `options.interfaces`. Resolves once the listeners are started
 * (an interface that does not exist yet, or a socket that cannot be opened, is logged and
 * retried every `watchMs`; it does not make this fail).
 */
export function startRaDiscovery(options: RaDiscoveryOptions): Promise<RaDiscovery> {
  const d = new Discovery(options);
  d.start();
  return Promise.resolve(d);
}

class Discovery implements RaDiscovery {
  #o: RaDiscoveryOptions;
  #now: () => number;
  #timers: Timers;
  #log: (line: string) => void;
  #ifindex: (iface: string) => number;
  #runIp: IpRunner;
  #openSocket: RaSocketFactory;
  #table = new RaPvdTable();
  #scheduler: InfoScheduler;
  #addrs = new Map<string, IfAddr[]>();
  #indexes = new Map<string, number>();
  #sockets = new Map<string, RaSocket>();
  #attached = new Set<string>();
  #known = new Set<string>();
  #queue: Promise<void> = Promise.resolve();
  #loops: Promise<void>[] = [];
  #sleeps = new Set<{ handle: unknown; resolve: () => void }>();
  #expiryTimer: unknown;
  #refreshTimer: unknown;
  #watchTimer: unknown;
  #lastPublished = "[]";
  #logged = new Set<string>();
  #closed = false;

  constructor(o: RaDiscoveryOptions) {
    this.#o = o;
    this.#now = o.now ?? Date.now;
    this.#timers = o.timers ?? realTimers;
    this.#log = o.log ?? ((line) => console.error(`pvdns: ra: ${line}`));
    this.#ifindex = o.interfaceIndex ?? realInterfaceIndex;
    this.#runIp = o.runIp ?? realRunIp;
    this.#openSocket = o.openSocket ?? openRaSocket;
    this.#scheduler = new InfoScheduler({
      fetcher: o.fetcher ?? createInfoFetcher({ caFile: o.caFile, log: this.#log }),
      onChange: () => this.#enqueue(() => Promise.resolve()),
      now: this.#now,
      timers: this.#timers,
      random: o.random ?? Math.random,
      log: this.#log,
    });
  }

  start(): void {
    for (const iface of new Set(this.#o.interfaces)) this.#loops.push(this.#listen(iface));
    this.#armWatch();
  }

  /** Logs a line once per distinct key (dropped packets, retries). */
  #logOnce(key: string, line: string): void {
    if (this.#logged.has(key)) return;
    if (this.#logged.size > 1000) this.#logged.clear();
    this.#logged.add(key);
    this.#log(line);
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const entry = {
        handle: undefined as unknown,
        resolve: () => {
          this.#sleeps.delete(entry);
          resolve();
        },
      };
      entry.handle = this.#timers.setTimeout(entry.resolve, ms);
      this.#sleeps.add(entry);
    });
  }

  async #listen(iface: string): Promise<void> {
    const retry = this.#o.watchMs ?? 5000;
    while (!this.#closed) {
      let socket: RaSocket;
      try {
        socket = await this.#openSocket(iface);
      } catch (e) {
        this.#logOnce(
          `open|${iface}|${(e as Error).message}`,
          `${iface}: ${(e as Error).message}` +
            ` (retrying every ${retry / 1000} s)`,
        );
        await this.#sleep(retry);
        continue;
      }
      if (this.#closed) {
        await socket.close();
        break;
      }
      this.#indexes.set(iface, this.#ifindex(iface));
      this.#sockets.set(iface, socket);
      this.#log(`listening for router advertisements on ${iface}`);
      for (;;) {
        const packet = await socket.receive();
        if (!packet) break;
        this.#onPacket(packet);
      }
      this.#sockets.delete(iface);
      await socket.close();
      if (!this.#closed) await this.#sleep(retry);
    }
  }

  #onPacket(p: ReceivedPacket): void {
    const iface = p.interface;
    const expected = this.#indexes.get(iface);
    let drop: string | undefined;
    if (p.hopLimit !== 255) drop = `hop limit ${p.hopLimit}, not 255`;
    else if (!/^fe[89ab][0-9a-f]:/i.test(p.source)) drop = "source is not link-local";
    else if (p.ifindex !== 0 && expected && p.ifindex !== expected) {
      drop = `arrived on interface index ${p.ifindex}, not ${expected}`;
    }
    if (drop) {
      this.#logOnce(
        `drop|${iface}|${p.source}|${drop}`,
        `${iface}: RA from ${p.source} dropped: ${drop}`,
      );
      return;
    }
    const d = decodeRa(p.payload);
    if (!d.ok) {
      this.#logOnce(
        `bad|${iface}|${p.source}|${d.code}`,
        `${iface}: RA from ${p.source} rejected (${d.code}): ${d.reason}`,
      );
      return;
    }
    for (const r of d.value.rejected) {
      this.#logOnce(
        `opt|${iface}|${p.source}|${r.optionType}|${r.code}`,
        `${iface}: RA from ${p.source}: option ${r.optionType}${
          r.inPvd ? " in the PvD option" : ""
        }` +
          ` ignored (${r.code}): ${r.reason}`,
      );
    }
    const ra = d.value;
    this.#enqueue(async () => {
      const result = this.#table.apply(iface, p.source, ra, this.#now());
      if (!result.applied) {
        this.#logOnce(`apply|${result.reason}`, result.reason);
        return;
      }
      await this.#readAddresses(iface);
    });
  }

  /** Runs `fn`, then brings everything up to date, one at a time. */
  #enqueue(fn: () => Promise<void>): void {
    this.#queue = this.#queue.then(async () => {
      if (this.#closed) return;
      try {
        await fn();
        if (!this.#closed) this.#sync();
      } catch (e) {
        this.#log(`internal error: ${(e as Error).stack ?? e}`);
      }
    });
  }

  async #readAddresses(iface: string): Promise<void> {
    try {
      this.#addrs.set(iface, parseIpAddr(await this.#runIp(["addr", "show", "dev", iface])));
    } catch (e) {
      this.#logOnce(`ip|${iface}|${(e as Error).message}`, `${iface}: ${(e as Error).message}`);
      this.#addrs.set(iface, []);
    }
  }

  /** Expire, rebuild, tell the scheduler, publish when changed, re-arm the timers. */
  #sync(): void {
    this.#table.expire(this.#now());
    const pvds = this.#table.pvds;
    // Attachments that ended: the interface has no RA PvD left.
    const live = new Set(pvds.map((p) => p.interface));
    for (const iface of this.#attached) {
      if (!live.has(iface)) {
        this.#attached.delete(iface);
        this.#scheduler.endAttachment(iface);
      }
    }
    for (const iface of live) this.#attached.add(iface);
    const ids = new Set(pvds.map((p) => `${p.interface}|${p.id}`));
    for (const key of this.#known) {
      if (!ids.has(key)) {
        const [iface, id] = key.split("|") as [string, string];
        this.#scheduler.remove(iface, id);
      }
    }
    this.#known = ids;

    const configs: PvdConfig[] = [];
    for (const p of pvds) {
      const built = this.#build(p);
      configs.push(built.config);
      if (!p.implicit && p.flags) {
        this.#scheduler.update({
          interface: p.interface,
          id: p.id,
          h: p.flags.h,
          delay: p.flags.delay,
          seq: p.flags.seq,
          fetchSources: built.fetchSources,
          sourceAddresses: built.config.sourceAddresses,
          servers: built.config.servers.filter((s) => s.protocol === "udp"),
          prefixes: built.config.prefixes,
        });
      }
    }
    // The scheduler may have dropped information just now: build again from its final state.
    const final = pvds.map((p) => deepFreeze(this.#build(p).config));
    const text = JSON.stringify(final);
    if (text !== this.#lastPublished) {
      this.#lastPublished = text;
      try {
        this.#o.publish(final);
      } catch (e) {
        this.#log(`publish failed: ${(e as Error).message}`);
      }
    }
    this.#armExpiry();
    this.#armRefresh(live.size > 0);
  }

  #build(p: RaPvd): { config: PvdConfig; fetchSources: string[] } {
    return raPvdConfig(p, {
      addresses: this.#addrs.get(p.interface) ?? [],
      info: p.implicit ? undefined : this.#scheduler.info(p.interface, p.id),
      logOnce: (key, line) => this.#logOnce(key, line),
    });
  }

  #armExpiry(): void {
    if (this.#expiryTimer !== undefined) this.#timers.clearTimeout(this.#expiryTimer);
    this.#expiryTimer = undefined;
    const next = this.#table.nextExpiry();
    if (next === undefined || this.#closed) return;
    // setTimeout holds 32-bit delays: far expiries re-arm on the way.
    const delay = Math.min(Math.max(0, next - this.#now()), 0x7fffffff);
    this.#expiryTimer = this.#timers.setTimeout(() => {
      this.#expiryTimer = undefined;
      this.#enqueue(() => Promise.resolve());
    }, delay);
  }

  #armRefresh(needed: boolean): void {
    if (!needed || this.#closed) {
      if (this.#refreshTimer !== undefined) this.#timers.clearTimeout(this.#refreshTimer);
      this.#refreshTimer = undefined;
      return;
    }
    if (this.#refreshTimer !== undefined) return;
    this.#refreshTimer = this.#timers.setTimeout(() => {
      this.#refreshTimer = undefined;
      this.#enqueue(async () => {
        for (const iface of new Set(this.#table.pvds.map((p) => p.interface))) {
          await this.#readAddresses(iface);
        }
      });
    }, this.#o.addressRefreshMs ?? 10_000);
  }

  /** Every `watchMs`: an interface whose index changed (gone, or back) ends its attachment. */
  #armWatch(): void {
    if (this.#closed) return;
    this.#watchTimer = this.#timers.setTimeout(() => {
      this.#watchTimer = undefined;
      for (const [iface, index] of this.#indexes) {
        let now: number;
        try {
          now = this.#ifindex(iface);
        } catch {
          continue;
        }
        if (now === index) continue;
        this.#indexes.delete(iface);
        this.#log(`${iface}: interface ${now === 0 ? "gone" : "replaced"}; its PvDs are dropped`);
        this.#sockets.get(iface)?.close();
        this.#enqueue(() => {
          this.#table.dropInterface(iface);
          this.#addrs.delete(iface);
          return Promise.resolve();
        });
      }
      this.#armWatch();
    }, this.#o.watchMs ?? 5000);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const t of [this.#expiryTimer, this.#refreshTimer, this.#watchTimer]) {
      if (t !== undefined) this.#timers.clearTimeout(t);
    }
    for (const s of [...this.#sleeps]) {
      this.#timers.clearTimeout(s.handle);
      s.resolve();
    }
    await Promise.all([...this.#sockets.values()].map((s) => s.close()));
    await Promise.allSettled(this.#loops);
    await this.#scheduler.close();
    await this.#queue;
  }
}

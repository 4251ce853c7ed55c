/**
 * The stub's DNS listeners: a UDP and a TCP socket per configured address, on the same port.
 * A reload binds the new addresses first ({@linkcode ListenerSet.bindNew}), so that a bind that
 * fails changes nothing; then {@linkcode ListenerSet.commit} hands the kept listeners their new
 * config (through their {@linkcode ListenerSlot}) and closes the ones that are gone.
 *
 * @module
 */
import type { ListenerConfig } from "../config/types.ts";
import type {
  DnsListener,
  LimitCounter,
  ListenerSlot,
  QueryHandler,
  TcpLimits,
} from "../listen/listener.ts";
import { startTcpListener } from "../listen/tcp.ts";
import { startUdpListener } from "../listen/udp.ts";
import { startMmsgUdpListener } from "../listen/udp_mmsg.ts";

/** One address's sockets and the slot holding the config they serve with. */
interface OpenListener {
  readonly udp: DnsListener;
  readonly tcp: DnsListener;
  readonly slot: ListenerSlot;
}

/** Listeners bound by {@linkcode ListenerSet.bindNew}, not yet serving in the set. */
export type BoundListeners = ReadonlyMap<string, OpenListener>;

/** Options of {@linkcode ListenerSet}. */
export interface ListenerSetOptions {
  /** Answers each query (the stub's query server). */
  readonly handler: QueryHandler;
  /** The TCP bounds, read per connection so that a reload applies at once. */
  readonly tcpLimits: TcpLimits;
  /** The recvmmsg/sendmmsg UDP listener instead of `Deno.listenDatagram`. */
  readonly batched: boolean;
  readonly log: (line: string) => void;
  readonly onLimit: LimitCounter;
}

/** The open listeners, keyed by their configured text (`ADDR:PORT`). */
export class ListenerSet {
  readonly #open = new Map<string, OpenListener>();
  readonly #o: ListenerSetOptions;

  /** An empty set; {@linkcode ListenerSet.open} binds the config's listeners. */
  constructor(options: ListenerSetOptions) {
    this.#o = options;
  }

  /** `ADDR:PORT` of each listener, with the port actually bound. */
  get listening(): string[] {
    return [...this.#open.values()].map((o) => o.udp.text);
  }

  /** Binds every listener of `listen`; when one fails, closes the others and throws. */
  async open(listen: readonly ListenerConfig[]): Promise<void> {
    const bound = await this.bindNew(listen);
    for (const [text, o] of bound) this.#open.set(text, o);
  }

  /**
   * Binds the listeners of `listen` that are not open yet; nothing else changes. When one fails,
   * closes those it bound and throws an error naming the field (`listen[1] "…": cannot bind`).
   */
  async bindNew(listen: readonly ListenerConfig[]): Promise<BoundListeners> {
    const fresh = new Map<string, OpenListener>();
    try {
      listen.forEach((l, i) => {
        if (this.#open.has(l.text)) return;
        try {
          fresh.set(l.text, this.#bind(l));
        } catch (e) {
          throw bindFailure(e, `listen[${i}] ${JSON.stringify(l.text)}`);
        }
      });
    } catch (e) {
      await this.discard(fresh);
      throw e;
    }
    return fresh;
  }

  /** Closes listeners bound for a reload that did not happen. */
  async discard(bound: BoundListeners): Promise<void> {
    for (const o of bound.values()) await close(o);
  }

  /**
   * Makes `listen` the set: kept listeners serve with their new config from the next query,
   * `bound` ones join, the others close. Returns what was added and removed.
   */
  async commit(
    listen: readonly ListenerConfig[],
    bound: BoundListeners,
  ): Promise<{ added: string[]; removed: string[] }> {
    const wanted = new Map(listen.map((l) => [l.text, l]));
    const removed: string[] = [];
    for (const [text, o] of this.#open) {
      const l = wanted.get(text);
      if (l) o.slot.listener = l; // a new PvD binding applies from the next query
      else {
        this.#open.delete(text);
        removed.push(text);
        await close(o);
      }
    }
    for (const [text, o] of bound) this.#open.set(text, o);
    return { added: [...bound.keys()], removed };
  }

  /** Stops taking queries everywhere; settles when every TCP connection is written out. */
  stop(): Promise<void>[] {
    return [...this.#open.values()].flatMap((o) => [o.udp.stop(), o.tcp.stop()]);
  }

  /** Closes every listener. */
  async close(): Promise<void> {
    for (const o of this.#open.values()) await close(o);
    this.#open.clear();
  }

  #bind(l: ListenerConfig): OpenListener {
    const { handler, log, tcpLimits, onLimit } = this.#o;
    const slot: ListenerSlot = { listener: l };
    const udp = this.#o.batched
      ? startMmsgUdpListener(slot, handler, log)
      : startUdpListener(slot, handler, log);
    try {
      // Port 0 asks the kernel; TCP then takes the port UDP got, so one address serves both.
      const tcp = startTcpListener(slot, handler, tcpLimits, log, onLimit, udp.port);
      return { udp, tcp, slot };
    } catch (e) {
      udp.close();
      throw e;
    }
  }
}

async function close(o: OpenListener): Promise<void> {
  await o.udp.close();
  await o.tcp.close();
}

/**
 * A bind error that names the config field and address (`listen[1] "192.0.2.99:53": cannot
 * bind: …`), of the same class as the runtime's, so callers can still tell "address in use" from
 * the rest.
 */
function bindFailure(e: unknown, field: string): Error {
  if (!(e instanceof Error)) return new Error(`${field}: cannot bind: ${String(e)}`);
  const hint = e instanceof Deno.errors.AddrNotAvailable ? " (not an address of this host)" : "";
  const Kind = e.constructor as new (message: string, options?: ErrorOptions) => Error;
  try {
    return new Kind(`${field}: cannot bind: ${e.message}${hint}`, { cause: e });
  } catch {
    return new Error(`${field}: cannot bind: ${e.message}${hint}`, { cause: e });
  }
}

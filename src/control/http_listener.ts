/**
 * {@linkcode serveOn}: a web `Request`/`Response` handler served over HTTP/1.1 on a Unix socket
 * or a TCP address, with bounds that no local process can exhaust.
 *
 * Why an accept loop of pvdns's own with `Deno.serveHttp(conn)`: `Deno.serve` gives no count of
 * connections and no header timeout, and its accept loop dies with an uncaught error on EMFILE,
 * which ended the whole daemon, DNS included. node:http under Deno 2.9 honours
 * `maxConnections` but not `headersTimeout`/`requestTimeout`, and stopped accepting after an
 * EMFILE (both measured). Accepting the connections itself (`Deno.listen`, TCP or Unix) lets
 * pvdns count them, survive a failed accept and close a connection whose request does not come in
 * time; `Deno.serveHttp` then serves HTTP on each with the same handlers as `Deno.serve`. It is
 * deprecated and untyped in Deno 2 but works in 2.9; if a Deno drops it, {@linkcode serveOn}
 * refuses to start with a message that says so.
 *
 * Bounds, per listener (`limits.http*`, read when the listener starts; each reached bound is
 * counted by its name):
 * - past `httpConnections` open connections, a new one is closed at once (`http_connections`);
 * - a connection's first request head must arrive within `httpHeaderMs` (`http_header_timeout`);
 * - after a response the next request head must come within `httpIdleMs`, else it is closed;
 * - a request, from its head to the end of its response, has `httpIdleMs`
 *   (`http_request_timeout`): a body that drips or a client that reads nothing is cut. A
 *   `text/event-stream` response is exempt: event streams live as long as their client, bounded
 *   by the connection bound;
 * - a failed accept (EMFILE, ENFILE …) is counted (`fds`) and retried after 5 ms doubling to 1 s,
 *   as Go's net/http does; it is never fatal.
 *
 * Request bodies are read by the handlers, bounded while they stream (http_body.ts).
 *
 * A Unix socket is bound with the umask at 0117, so it is mode 0660 from the moment it exists,
 * never wider; a socket left behind by a process that is gone is replaced, a live one is not.
 *
 * @module
 */

import { parseListenAddress } from "../config/schema.ts";
import { problem } from "./http_problem.ts";
import { AcceptRetry } from "../sys/fd_limit.ts";

/** A running HTTP listener. */
export interface HttpListener {
  /** Where it listens: `unix:/run/pvdns.sock` or `http://127.0.0.1:5380` (the real port). */
  readonly url: string;
  /** Connections open now. */
  readonly connections: number;
  /** Stops it: no new connection; open event streams are ended, the others after their response. */
  close(): Promise<void>;
}

/** The HTTP bounds of {@linkcode ServeOptions} (a part of `limits` in the config). */
export interface HttpLimits {
  /** Open connections at most; more are closed at once. @default 64 */
  readonly httpConnections?: number | undefined;
  /** A connection's first request head must arrive within this, ms. @default 5000 */
  readonly httpHeaderMs?: number | undefined;
  /** Time for the next request head after a response, and for a request to be done, ms. @default 30000 */
  readonly httpIdleMs?: number | undefined;
}

/** Options of {@linkcode serveOn}. */
export interface ServeOptions {
  /** `unix:/PATH` or `ADDR:PORT` (port 0: the kernel picks). */
  readonly listen: string;
  readonly handler: (req: Request) => Promise<Response>;
  /** Bounds; the defaults of the config apply to what is absent. */
  readonly limits?: HttpLimits | undefined;
  /** Told each time a bound is reached, by the bound's name (`http_connections`, `fds` …). */
  readonly onLimit?: ((limit: string) => void) | undefined;
  /** Called when closing starts (the control API ends its event streams). */
  readonly beforeClose?: (() => void) | undefined;
  /** Where accept failures are told. @default console.error */
  readonly log?: ((line: string) => void) | undefined;
}

/** What `Deno.serveHttp` gives (untyped in Deno 2). */
interface RequestEvent {
  readonly request: Request;
  respondWith(response: Response): Promise<void>;
}
interface ServedConnection {
  nextRequest(): Promise<RequestEvent | null>;
  close(): void;
}
type ServeHttp = (conn: Deno.Conn) => ServedConnection;

/** How long a busy connection may still take once its listener closes, ms. */
const CLOSE_GRACE_MS = 2000;

function serveHttpOfDeno(): ServeHttp {
  const serveHttp = (Deno as unknown as { serveHttp?: ServeHttp }).serveHttp;
  if (typeof serveHttp !== "function") {
    throw new Error(
      "this Deno has no Deno.serveHttp, which pvdns's HTTP listeners use (Deno 2.9.6 has it)",
    );
  }
  return (conn) => serveHttp.call(Deno, conn);
}

/** True when something accepts connections on the Unix socket `path`. */
async function socketLive(path: string): Promise<boolean> {
  try {
    const conn = await Deno.connect({ transport: "unix", path });
    conn.close();
    return true;
  } catch {
    return false;
  }
}

/**
 * Binds the Unix socket `path` with mode 0660 from its creation: the umask is 0117 while bind(2)
 * runs (in one synchronous call, so no other code of pvdns runs meanwhile) and put back after.
 */
export function listenUnixSocket(path: string): Deno.UnixListener {
  const previous = Deno.umask(0o117);
  try {
    return Deno.listen({ transport: "unix", path });
  } finally {
    Deno.umask(previous);
  }
}

/**
 * Serves `options.handler` on `options.listen`; resolves once bound.
 *
 * @throws {Error} when the address cannot be bound, or a live process serves the Unix socket
 * @example
 * ```ts ignore
 * const l = await serveOn({ listen: "127.0.0.1:0", handler: () => Promise.resolve(new Response("hi")) });
 * await l.close();
 * ```
 */
export async function serveOn(options: ServeOptions): Promise<HttpListener> {
  const serveHttp = serveHttpOfDeno();
  const log = options.log ?? ((line: string) => console.error(line));
  const onLimit = options.onLimit ?? (() => {});
  let listener: Deno.Listener;
  let url: string;
  if (options.listen.startsWith("unix:")) {
    const path = options.listen.slice("unix:".length);
    const existing = await Deno.lstat(path).catch(() => undefined);
    if (existing) {
      if (!existing.isSocket) {
        throw new Deno.errors.AlreadyExists(`${path} exists and is not a socket`);
      }
      if (await socketLive(path)) {
        throw new Deno.errors.AddrInUse(`${path}: another process already serves this socket`);
      }
      await Deno.remove(path); // left behind by a process that is gone
    }
    listener = listenUnixSocket(path);
    url = options.listen;
  } else {
    const a = parseListenAddress(options.listen);
    listener = Deno.listen({ hostname: a.address, port: a.port });
    const port = (listener.addr as Deno.NetAddr).port;
    url = `http://${a.address.includes(":") ? `[${a.address}]` : a.address}:${port}`;
  }
  const limits: Required<{ [K in keyof HttpLimits]: number }> = {
    httpConnections: options.limits?.httpConnections ?? 64,
    httpHeaderMs: options.limits?.httpHeaderMs ?? 5000,
    httpIdleMs: options.limits?.httpIdleMs ?? 30000,
  };
  const open = new Set<HttpConnection>();
  const retry = new AcceptRetry({ name: `http ${url}`, log, onLimit });
  let closed = false;
  const loop = (async () => {
    while (!closed) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch (e) {
        if (closed) return;
        await retry.failed(e);
        continue;
      }
      retry.succeeded();
      if (closed || open.size >= limits.httpConnections) {
        if (!closed) onLimit("http_connections");
        try {
          conn.close(); // bounded: refuse rather than queue
        } catch { /* already gone */ }
        continue;
      }
      const c = new HttpConnection({ conn, serveHttp, handler: options.handler, limits, onLimit });
      open.add(c);
      c.closed.then(() => open.delete(c));
    }
  })();
  let closing: Promise<void> | undefined;
  return {
    url,
    get connections() {
      return open.size;
    },
    close() {
      closing ??= (async () => {
        closed = true;
        retry.wake();
        try {
          listener.close();
        } catch { /* already closed */ }
        await loop;
        options.beforeClose?.();
        const all = [...open];
        for (const c of all) c.closeWhenIdle();
        await Promise.all(all.map((c) => c.closed));
      })();
      return closing;
    },
  };
}

const ignore = () => {};

const internalError = (e: unknown) =>
  problem(500, "internal", "Internal error", (e as Error)?.message ?? String(e));

/** One accepted connection, served request by request under the listener's timers. */
class HttpConnection {
  /** Settles once the connection is closed (its descriptor released). */
  readonly closed: Promise<void>;
  #conn: Deno.Conn;
  #http: ServedConnection | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #isClosed = false;
  #waiting = true;
  #streaming = false;
  #closing = false;
  #onClosed!: () => void;
  #o: {
    handler: (req: Request) => Promise<Response>;
    limits: Required<{ [K in keyof HttpLimits]: number }>;
    onLimit: (limit: string) => void;
  };

  constructor(o: {
    conn: Deno.Conn;
    serveHttp: ServeHttp;
    handler: (req: Request) => Promise<Response>;
    limits: Required<{ [K in keyof HttpLimits]: number }>;
    onLimit: (limit: string) => void;
  }) {
    this.#conn = o.conn;
    this.#o = o;
    this.closed = new Promise<void>((resolve) => this.#onClosed = resolve);
    this.#serve(o.serveHttp).catch(ignore);
  }

  /** Closes now. */
  close(): void {
    if (this.#isClosed) return;
    this.#isClosed = true;
    clearTimeout(this.#timer);
    try {
      if (this.#http) this.#http.close();
      else this.#conn.close();
    } catch { /* already closed */ }
    this.#onClosed();
  }

  /** The listener is closing: now when between requests or streaming, else after its response. */
  closeWhenIdle(): void {
    this.#closing = true;
    if (this.#waiting || this.#streaming) this.close();
    else this.#arm(CLOSE_GRACE_MS);
  }

  /** After `ms` the connection is closed; `limit` is counted when it is a bound's doing. */
  #arm(ms: number, limit?: string): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      if (limit) this.#o.onLimit(limit);
      this.close();
    }, ms);
  }

  async #serve(serveHttp: ServeHttp): Promise<void> {
    try {
      this.#http = serveHttp(this.#conn);
    } catch {
      this.close();
      return;
    }
    const { handler, limits } = this.#o;
    this.#arm(limits.httpHeaderMs, "http_header_timeout");
    try {
      while (!this.#isClosed) {
        const event = await this.#http.nextRequest();
        if (!event || this.#isClosed) break;
        this.#waiting = false;
        this.#arm(limits.httpIdleMs, "http_request_timeout");
        const response = await handler(event.request).catch(internalError);
        if (response.headers.get("content-type")?.startsWith("text/event-stream")) {
          clearTimeout(this.#timer);
          this.#streaming = true;
          if (this.#closing) break;
        }
        // Deno cancels the body (an event stream's source) when its connection goes.
        await event.respondWith(response).catch(ignore);
        this.#streaming = false;
        if (this.#closing) break;
        this.#waiting = true;
        this.#arm(limits.httpIdleMs);
      }
    } catch {
      // reset by the peer, a request hyper could not parse, or closed by a timer
    } finally {
      this.close();
    }
  }
}

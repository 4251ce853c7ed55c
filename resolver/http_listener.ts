/**
 * {@linkcode serveOn}: an HTTP handler served with `Deno.serve` on a Unix socket (mode 0660; a
 * socket left behind by a process that is gone is replaced, a live one is not) or a TCP address,
 * as a {@linkcode HttpListener} that closes once.
 *
 * @module
 */

import { parseListenAddress } from "./config_schema.ts";
import { problem } from "./http_problem.ts";

/** A running HTTP listener. */
export interface HttpListener {
  /** Where it listens: `unix:/run/pvdns.sock` or `http://127.0.0.1:5380` (the real port). */
  readonly url: string;
  /** Stops it (open event streams are ended first). */
  close(): Promise<void>;
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

/** Serves `handler` on `listen` (`unix:/PATH` or `ADDR:PORT`); resolves once bound. */
export async function serveOn(
  listen: string,
  handler: (req: Request) => Promise<Response>,
  beforeClose: () => void = () => {},
): Promise<HttpListener> {
  let server: Deno.HttpServer;
  let url: string;
  const onError = (e: unknown) =>
    problem(500, "internal", "Internal error", (e as Error).message ?? String(e));
  if (listen.startsWith("unix:")) {
    const path = listen.slice("unix:".length);
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
    server = Deno.serve({ path, onListen: () => {}, onError }, handler);
    await Deno.chmod(path, 0o660);
    url = listen;
  } else {
    const a = parseListenAddress(listen);
    const bound = await new Promise<Deno.NetAddr>((resolve, reject) => {
      try {
        server = Deno.serve({
          hostname: a.address,
          port: a.port,
          onListen: (addr) => resolve(addr as Deno.NetAddr),
          onError,
        }, handler);
      } catch (e) {
        reject(e);
      }
    });
    url = `http://${a.address.includes(":") ? `[${a.address}]` : a.address}:${bound.port}`;
  }
  let closing: Promise<void> | undefined;
  return {
    url,
    close() {
      closing ??= (async () => {
        beforeClose();
        await server.shutdown();
      })();
      return closing;
    },
  };
}

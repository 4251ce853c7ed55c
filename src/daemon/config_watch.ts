/**
 * The running daemon's config file: reloaded on SIGHUP and when the file changes (its folder is
 * watched, since editors replace files). A file that does not validate is refused with its
 * errors, and the running config keeps serving.
 *
 * @module
 */

import { refusalLines } from "../config/error.ts";
import { loadConfigForHost } from "../host/local_addresses.ts";
import type { PvdConfig } from "../config/types.ts";
import type { ReloadOutcome } from "../control/control.ts";
import type { Stub } from "../service/stub.ts";

/** One log line describing a PvD: its servers, source addresses and zones. */
export function describePvd(pvd: PvdConfig): string {
  return `pvdns: PvD ${pvd.id}${pvd.default ? " (default)" : ""}: servers ${
    pvd.servers.map((s) => s.text).join(", ")
  } from ${pvd.sourceAddresses.join(", ")}${
    pvd.dnsZones.length ? `; zones ${pvd.dnsZones.join(", ")}` : ""
  }`;
}

/** A running config watch. */
export interface ConfigWatch {
  /** Stops watching (the SIGHUP listener and the folder watch). */
  close(): void;
  /** Reloads now; `why` goes into the log line. */
  reload(why: string): Promise<ReloadOutcome>;
}

/**
 * Reloads the config file on SIGHUP and when the file changes. A file that does not validate is
 * refused with its errors and the running config keeps serving.
 */
export function watchConfig(path: string, stub: Stub): ConfigWatch {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let running: Promise<unknown> = Promise.resolve();
  const reload = (why: string): Promise<ReloadOutcome> => {
    const run = running.then(async (): Promise<ReloadOutcome> => {
      try {
        const next = await loadConfigForHost(path);
        const r = await stub.reload(next);
        stub.metrics.reload("success");
        const list = (label: string, ids: readonly string[]) =>
          ids.length ? ` ${label} ${ids.join(", ")};` : "";
        console.log(
          `pvdns: reloaded ${path} (${why}):${list("added", r.added)}${list("changed", r.changed)}${
            list("removed", r.removed)
          }${list("listening on", r.listenersAdded)}${list("stopped", r.listenersRemoved)}`
            .replace(/;$/, "").replace(/:$/, ": nothing changed"),
        );
        for (const id of [...r.added, ...r.changed]) {
          const pvd = next.pvds.find((p) => p.id === id);
          if (pvd) console.log(describePvd(pvd));
        }
        return { ok: true, result: r };
      } catch (e) {
        stub.metrics.reload("failure");
        const errors = refusalLines(e);
        console.error(
          `pvdns: reload of ${path} refused (${why}); still serving the previous config:`,
        );
        for (const line of errors) console.error(`  ${line}`);
        return { ok: false, errors };
      }
    });
    running = run;
    return run;
  };
  const onHup = () => reload("SIGHUP");
  Deno.addSignalListener("SIGHUP", onHup);
  // Watch the folder, not the file: editors often replace the file, which ends a file watch.
  const absolute = path.startsWith("/") ? path : `${Deno.cwd()}/${path}`;
  const folder = absolute.slice(0, absolute.lastIndexOf("/")) || "/";
  const watcher = Deno.watchFs(folder, { recursive: false });
  (async () => {
    try {
      for await (const event of watcher) {
        if (event.kind === "access" || !event.paths.includes(absolute)) continue;
        // Editors write in several steps: wait for the file to settle.
        clearTimeout(timer);
        timer = setTimeout(() => reload("file changed"), 200);
      }
    } catch { /* watcher closed */ }
  })();
  return {
    close() {
      clearTimeout(timer);
      Deno.removeSignalListener("SIGHUP", onHup);
      watcher.close();
    },
    reload,
  };
}

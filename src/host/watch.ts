/**
 * Host discovery while running (`"discovery": { "host": true }`, on in the embedded default):
 * the host's interfaces, addresses and resolver configuration are read again every few seconds,
 * and the host PvDs are replaced when they changed. Read-only: pvdns changes nothing on the host.
 *
 * @module
 */

import { ConfigError } from "../config/parse.ts";
import type { PvdConfig } from "../config/types.ts";
import { buildHostDefault, type HostDeps } from "./default_config.ts";

/** Options of {@linkcode watchHost}. */
export interface HostWatchOptions {
  /** Receives the host PvDs each time they differ from the last ones. */
  readonly publish: (pvds: readonly PvdConfig[]) => void;
  /** pvdns's own listen addresses (`ADDR:PORT`), never used as upstreams. */
  readonly listenAddresses: readonly string[];
  /** How often to look, ms. @default 5000 */
  readonly intervalMs?: number;
  readonly log?: (line: string) => void;
  /** Injected host access, for tests. */
  readonly deps?: Omit<HostDeps, "listenAddresses">;
}

/** Reads the host's PvDs now (empty when the host has no usable resolver configuration). */
export async function readHostPvds(
  listenAddresses: readonly string[],
  deps: Omit<HostDeps, "listenAddresses"> = {},
): Promise<readonly PvdConfig[]> {
  try {
    // Only the PvDs are used: the listeners (and who may query them) are the running config's.
    const allow = ["0.0.0.0/0", "::/0"];
    return (await buildHostDefault({ ...deps, listenAddresses, allow })).pvds;
  } catch (e) {
    if (e instanceof ConfigError) return [];
    throw e;
  }
}

/**
 * Polls the host and publishes its PvDs when they change.
 *
 * @example Usage
 * ```ts ignore
 * const w = watchHost({ publish: (pvds) => stub.setDiscovered("host", pvds), listenAddresses: stub.listening });
 * w.close();
 * ```
 */
export function watchHost(options: HostWatchOptions): { close(): void } {
  let last = "";
  let timer: ReturnType<typeof setTimeout> | undefined;
  let closed = false;
  const tick = async () => {
    try {
      const pvds = await readHostPvds(options.listenAddresses, options.deps);
      const json = JSON.stringify(pvds);
      if (!closed && json !== last) {
        if (last !== "") options.log?.(`pvdns: host configuration changed`);
        last = json;
        options.publish(pvds);
      }
    } catch (e) {
      options.log?.(`pvdns: host discovery: ${(e as Error).message}`);
    }
    if (!closed) timer = setTimeout(tick, options.intervalMs ?? 5000);
  };
  timer = setTimeout(tick, 0);
  return {
    close() {
      closed = true;
      clearTimeout(timer);
    },
  };
}

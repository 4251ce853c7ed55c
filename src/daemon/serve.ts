/**
 * `pvdns serve`, the daemon's composition root: the config (a file, checked against the host, or
 * the embedded default), the stub, the control API and metrics listener, the watches (config
 * file, host networks, router advertisements, descriptors) and the signals that stop it. The
 * command line that calls it is `src/cli/main.ts`.
 *
 * @module
 */
import { refusalLines } from "../config/error.ts";
import type { Config, ListenerConfig } from "../config/types.ts";
import { loadConfigForHost } from "../host/local_addresses.ts";
import { buildHostDefault } from "../host/default_config.ts";
import { watchHost } from "../host/watch.ts";
import { startRaDiscovery } from "../pvd/ra_discovery.ts";
import { createStub, type Stub } from "../service/stub.ts";
import {
  type HttpListener,
  type ReloadOutcome,
  startControl,
  startMetrics,
} from "../control/control.ts";
import { DEFAULT_CONTROL } from "../client/remote.ts";
import { setOpenFilesLimit, startFdMonitor } from "../sys/fd_limit.ts";
import { describePvd, watchConfig } from "./config_watch.ts";

/** The version printed by `pvdns --version`. */
export const VERSION = "0.1.0";

/** Port used by the embedded default when 127.0.0.53:53 cannot be bound. */
export const FALLBACK_PORT = 5053;

/**
 * How long queries already taken may still be answered after SIGTERM/SIGINT, ms (`--drain-ms`):
 * one upstream try (`upstream.timeoutMs`, 2 s by default), far below systemd's TimeoutStopSec.
 */
export const DRAIN_MS = 2000;

/**
 * What of `config` and `--udp-listener` needs Deno's `--allow-ffi` (raw sockets through libc) when
 * this process does not have it, or undefined when nothing is missing.
 */
function missingFfi(config: Config, udpListener: string): string | undefined {
  if (Deno.permissions.querySync({ name: "ffi" }).state === "granted") return undefined;
  const needs = [
    ...(config.discovery.ra.length
      ? [`discovery.ra ${JSON.stringify(config.discovery.ra)} (a raw ICMPv6 socket per interface)`]
      : []),
    ...(udpListener === "mmsg" ? ["--udp-listener mmsg (recvmmsg/sendmmsg)"] : []),
  ];
  return needs.length
    ? `${needs.join(" and ")} needs Deno's --allow-ffi permission, which this process does not ` +
      `have: run it with --allow-ffi (packaged: the pvdns-ffi binary, packaging/pvdns-ra.conf)`
    : undefined;
}

/** Options of {@linkcode serve}: what `pvdns serve` was given on its command line. */
export interface ServeOptions {
  /** `--config FILE`; without it the embedded default is built from the host. */
  readonly configPath?: string | undefined;
  /** `--udp-listener`. @default "auto" */
  readonly udpListener?: "auto" | "mmsg" | "deno";
  /** `--drain-ms`. @default {@linkcode DRAIN_MS} */
  readonly drainMs?: number;
}

/**
 * `pvdns serve`: loads the config, binds the stub, starts the control API, metrics, config,
 * host and RA watches, then runs until SIGTERM/SIGINT and drains. Resolves with the exit status.
 */
export async function serve(options: ServeOptions = {}): Promise<number> {
  const { configPath, udpListener = "auto", drainMs = DRAIN_MS } = options;
  let config: Config;
  try {
    config = configPath ? await loadConfigForHost(configPath) : await buildHostDefault();
  } catch (e) {
    return refuseConfig(configPath, e);
  }
  // Checked before anything is bound: failing later would leave half a daemon running.
  const ffi = missingFfi(config, udpListener);
  if (ffi) {
    console.error(`pvdns: cannot start: ${ffi}`);
    return 1;
  }
  // Before anything is bound: the soft descriptor limit the bounds need (src/sys/fd_limit.ts).
  const fdLimit = await setOpenFilesLimit({
    limits: config.limits,
    dnsTcpListeners: config.listen.length,
    httpListeners: (config.control || !configPath ? 1 : 0) + (config.metrics ? 1 : 0),
    log: (line) => console.log(line),
  });
  let stub: Stub;
  try {
    stub = await createStub(config, { version: VERSION, udpListener });
  } catch (e) {
    if (configPath || !isBindError(e)) {
      console.error(`pvdns: cannot start: ${(e as Error).message}`);
      return 1;
    }
    // Embedded default and 127.0.0.53:53 is taken or privileged: use an unprivileged port.
    const listen: ListenerConfig[] = config.listen.map((l) => ({
      ...l,
      port: FALLBACK_PORT,
      text: `${l.address}:${FALLBACK_PORT}`,
    }));
    console.error(
      `pvdns: cannot bind ${config.listen.map((l) => l.text).join(", ")} (${
        (e as Error).message
      }); using port ${FALLBACK_PORT} instead`,
    );
    config = Object.freeze({ ...config, listen: Object.freeze(listen) });
    stub = await createStub(config, { version: VERSION, udpListener });
  }
  for (const pvd of config.pvds) console.log(describePvd(pvd));
  for (const text of stub.listening) console.log(`pvdns: listening on ${text} (udp, tcp)`);
  const reloader = configPath ? watchConfig(configPath, stub) : undefined;
  let http: HttpListener[];
  try {
    http = await startHttp(config, stub, reloader && (() => reloader.reload("control API")), {
      embedded: !configPath,
    });
  } catch (e) {
    console.error(`pvdns: cannot start: ${(e as Error).message}`);
    reloader?.close();
    await stub.close();
    return 1;
  }
  const fdMonitor = startFdMonitor({
    limit: fdLimit?.soft,
    onLimit: (limit) => stub.metrics.limit(limit),
    log: (line) => console.error(line),
  });
  // From here a SIGTERM/SIGINT is a graceful stop, also while RA discovery is still starting.
  const stopping = stopSignal();
  console.log("pvdns: ready");
  stub.onPvdChange((events) => {
    for (const e of events) {
      console.log(`pvdns: PvD ${e.pvd.id} ${e.type} (${e.pvd.origin})`);
      if (e.type !== "removed") console.log(describePvd(e.pvd));
    }
  });
  const hostWatch = config.discovery.host
    ? watchHost({
      publish: (pvds) => {
        stub.setDiscovered("host", pvds).catch((e) => console.error(`pvdns: host PvDs: ${e}`));
      },
      listenAddresses: stub.listening,
      log: (line) => console.error(line),
    })
    : undefined;
  // PvDs from router advertisements (RFC 8801 PvD option, RDNSS, DNSSL, DNR) on these interfaces.
  const raDiscovery = config.discovery.ra.length
    ? await startRaDiscovery({
      interfaces: config.discovery.ra,
      publish: (pvds) => {
        stub.setDiscovered("ra", pvds).catch((e) => console.error(`pvdns: RA PvDs: ${e}`));
      },
      ...(config.caFile ? { caFile: config.caFile } : {}),
    })
    : undefined;
  await stopping;
  console.log(`pvdns: stopping (${stub.inFlight} queries in flight)`);
  // Nothing new is taken from here on; queries already taken get drainMs to be answered.
  reloader?.close();
  hostWatch?.close();
  fdMonitor.close();
  await Promise.all([
    stub.close({ drainMs }),
    ...http.map((listener) => listener.close()),
    raDiscovery?.close(),
  ]);
  console.log("pvdns: stopped");
  return 0;
}

/**
 * Resolves with the first SIGTERM or SIGINT. A second one while pvdns drains exits at once
 * (status 1): the operator asked twice and should not wait for the drain deadline.
 */
function stopSignal(): Promise<"SIGTERM" | "SIGINT"> {
  const signals = ["SIGTERM", "SIGINT"] as const;
  return new Promise((resolve) => {
    let first: Deno.Signal | undefined;
    for (const name of signals) {
      Deno.addSignalListener(name, () => {
        if (first === undefined) {
          first = name;
          resolve(name);
          return;
        }
        console.error(`pvdns: ${name} again while stopping: exiting at once`);
        Deno.exit(1);
      });
    }
  });
}

/**
 * Starts the control API and the metrics listener the config asks for. The embedded default
 * (no config file) offers the control API on the default Unix socket when it can.
 */
async function startHttp(
  config: Config,
  stub: Stub,
  reload: (() => Promise<ReloadOutcome>) | undefined,
  options: { embedded: boolean },
): Promise<HttpListener[]> {
  const started: HttpListener[] = [];
  try {
    const control = config.control ?? (options.embedded ? { listen: DEFAULT_CONTROL } : undefined);
    if (control) {
      try {
        const c = await startControl(stub, { ...control, reload, version: VERSION });
        started.push(c);
        console.log(`pvdns: control API on ${c.url}`);
      } catch (e) {
        if (config.control) {
          throw new Error(`control.listen ${control.listen}: ${(e as Error).message}`);
        }
        console.error(
          `pvdns: control API off: cannot listen on ${control.listen}: ${(e as Error).message}`,
        );
      }
    }
    if (config.metrics) {
      try {
        const m = await startMetrics(stub.registry, config.metrics.listen, {
          limits: config.limits,
          onLimit: (limit) => stub.metrics.limit(limit),
        });
        started.push(m);
        console.log(`pvdns: metrics on ${m.url}/metrics`);
      } catch (e) {
        throw new Error(`metrics.listen ${config.metrics.listen}: ${(e as Error).message}`);
      }
    }
    return started;
  } catch (e) {
    for (const l of started) await l.close();
    throw e;
  }
}

/**
 * Prints why a config was refused ({@linkcode refusalLines}) and returns exit status 2.
 */
export function refuseConfig(configPath: string | undefined, e: unknown): 2 {
  console.error(`pvdns: ${configPath ?? "embedded default"}: configuration refused:`);
  for (const line of refusalLines(e)) console.error(`  ${line}`);
  return 2;
}

function isBindError(e: unknown): boolean {
  return e instanceof Deno.errors.AddrInUse || e instanceof Deno.errors.PermissionDenied ||
    e instanceof Deno.errors.AddrNotAvailable;
}

/**
 * The `pvdns` command line.
 *
 * ```
 * pvdns serve [--config FILE]     run the stub (embedded default from the host without --config)
 * pvdns check --config FILE       validate a config file and print the result
 * pvdns pvds | query | flush | reload | stats   ask the running daemon (control API)
 * pvdns --version
 * ```
 *
 * Exit status: 0 on success, 1 on a runtime failure, 2 on a usage or configuration error, 3 when
 * the daemon cannot be reached.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { ConfigError, loadConfigFile } from "./resolver/config.ts";
import { loadConfigForHost } from "./resolver/config_host.ts";
import type { Config, ListenerConfig, PvdConfig } from "./resolver/config_types.ts";
import { buildHostDefault } from "./resolver/host_default.ts";
import { explainRoute } from "./policy/explain.ts";
import { checkRoutes } from "./policy/route_check.ts";
import { watchHost } from "./pvd/host_watch.ts";
import { startRaDiscovery } from "./pvd/ra_discovery.ts";
import { createStub, type Stub } from "./resolver/stub.ts";
import {
  type HttpListener,
  type ReloadOutcome,
  startControl,
  startMetrics,
} from "./resolver/control.ts";
import {
  flushCommand,
  pvdsCommand,
  queryCommand,
  reloadCommand,
  routeCommand,
  statsCommand,
} from "./client/cli.ts";
import { DEFAULT_CONTROL } from "./client/remote.ts";
import { encryptionMode, encryptionPolicy } from "./resolver/upstream.ts";
import { describePvd, watchConfig } from "./resolver/config_watch.ts";
import { setOpenFilesLimit, startFdMonitor } from "./resolver/fd_limit.ts";

/** The version printed by `pvdns --version`. */
export const VERSION = "0.1.0";

const USAGE = `usage: pvdns <command> [options]

commands:
  serve [--config FILE] [--udp-listener auto|mmsg|deno] [--drain-ms MS]
                          answer DNS on the configured listeners (default: built from this host);
                          mmsg = batched recvmmsg/sendmmsg through FFI, deno = Deno.listenDatagram;
                          on SIGTERM/SIGINT queries in flight get MS to be answered (default 2000)
  route NAME [TYPE] [--from ADDR] [--listener ADDR] [--pvd ID] [--config FILE] [--daemon]
                          explain which PvD answers NAME, by which step and rule, via which servers,
                          and which zone claims were refused; --daemon: with the PvDs in force in
                          the running daemon (discovered ones too; rules from --config when given)
  doctor [--config FILE]  check that each PvD's servers are reached through the PvD's own interface
  check --config FILE     validate a config file; print the normalised result as JSON
  --version               print the version

asking the running daemon (control API: --control URL or PVDNS_CONTROL, default
${DEFAULT_CONTROL}; --token TOKEN or PVDNS_TOKEN for a TCP control listener):
  pvds [--json]           the PvDs in force
  query NAME [TYPE] [--pvd ID] [--json]
                          resolve through the daemon: answer, PvD, source, time
  flush [--pvd ID]        empty the cache of one PvD, or of all
  reload                  read the config file again
  stats                   queries, answers and cache use per PvD

Exit status 2 means a usage or configuration error; nothing was started. 3 means the daemon
could not be reached.`;

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

async function serve(
  configPath: string | undefined,
  udpListener: "auto" | "mmsg" | "deno" = "auto",
  drainMs = DRAIN_MS,
): Promise<number> {
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
  // Before anything is bound: the soft descriptor limit the bounds need (resolver/fd_limit.ts).
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

/** Loads `--config FILE` or the embedded default; prints errors and returns null on failure. */
async function loadOrReport(configPath: string | undefined): Promise<Config | null> {
  try {
    return configPath ? await loadConfigFile(configPath) : await buildHostDefault();
  } catch (e) {
    refuseConfig(configPath, e);
    return null;
  }
}

/**
 * Prints why a config was refused and returns exit status 2. Any error counts, not only a
 * {@linkcode ConfigError}: a config must never end in a stack trace.
 */
function refuseConfig(configPath: string | undefined, e: unknown): 2 {
  const errors = e instanceof ConfigError ? e.errors : [`${(e as Error)?.message ?? String(e)}`];
  console.error(`pvdns: ${configPath ?? "embedded default"}: configuration refused:`);
  for (const line of errors) console.error(`  ${line}`);
  return 2;
}

async function route(
  args: string[],
  values: {
    config?: string;
    from?: string;
    listener?: string;
    pvd?: string;
    daemon?: boolean;
    control?: string;
    token?: string;
  },
): Promise<number> {
  const [name, type] = args;
  if (!name) {
    console.error(`pvdns: route needs a NAME\n${USAGE}`);
    return 2;
  }
  const input = { name, type, from: values.from, listener: values.listener, pvd: values.pvd };
  if (values.daemon) {
    // The daemon's PvDs; the rules and listeners of --config only when it is given.
    const base = values.config ? await loadOrReport(values.config) : undefined;
    if (base === null) return 2;
    return await routeCommand(values, input, base);
  }
  const config = await loadOrReport(values.config);
  if (!config) return 2;
  try {
    for (const l of explainRoute(config, input).lines) console.log(l);
    return 0;
  } catch (e) {
    console.error(`pvdns: ${(e as Error).message}`);
    return 2;
  }
}

async function doctor(configPath: string | undefined): Promise<number> {
  const config = await loadOrReport(configPath);
  if (!config) return 2;
  let bad = 0;
  for (const pvd of config.pvds) {
    console.log(
      `PvD ${pvd.id}${pvd.interface ? ` (interface ${pvd.interface})` : ""}${
        pvd.strictRoutes ? ", strictRoutes: fails closed on a wrong route" : ""
      }`,
    );
    console.log(`  ${encryptionLine(pvd)}`);
    for (const r of await checkRoutes(pvd)) {
      console.log(`  ${r.ok ? "ok  " : "FAIL"} ${r.detail}`);
      if (!r.ok) bad++;
    }
  }
  console.log(bad ? `${bad} server(s) not reached through their PvD's interface` : "all routes ok");
  return bad ? 1 : 0;

  /** The PvD's encryption policy (README "Servers"): what its servers allow in clear. */
  function encryptionLine(pvd: PvdConfig): string {
    const policy = encryptionPolicy(pvd);
    const clear = pvd.servers.filter((s) => s.protocol === "udp" || s.protocol === "tcp").length;
    if (encryptionMode(pvd) === "none") return "encrypted: no, every server is Do53 in clear";
    if (policy === "strict") return "encrypted: strict (tls/https only), never falls back to Do53";
    if (policy === "prefer") {
      return `encrypted: prefer, ${clear} Do53 server(s) asked only while every encrypted one is down`;
    }
    return `encrypted: off, ${clear} of ${pvd.servers.length} server(s) are Do53 in clear, by RTT`;
  }
}

function isBindError(e: unknown): boolean {
  return e instanceof Deno.errors.AddrInUse || e instanceof Deno.errors.PermissionDenied ||
    e instanceof Deno.errors.AddrNotAvailable;
}

async function check(configPath: string | undefined): Promise<number> {
  if (!configPath) {
    console.error("pvdns: check needs --config FILE");
    return 2;
  }
  try {
    console.log(JSON.stringify(await loadConfigFile(configPath), null, 2));
    return 0;
  } catch (e) {
    return refuseConfig(configPath, e);
  }
}

/** Runs the command line; resolves with the exit status. */
export async function main(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        config: { type: "string", short: "c" },
        from: { type: "string" },
        listener: { type: "string" },
        pvd: { type: "string" },
        json: { type: "boolean" },
        daemon: { type: "boolean" },
        control: { type: "string" },
        token: { type: "string" },
        version: { type: "boolean" },
        help: { type: "boolean", short: "h" },
        "udp-listener": { type: "string" },
        "drain-ms": { type: "string" },
      },
    });
  } catch (e) {
    console.error(`pvdns: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.version) {
    console.log(`pvdns ${VERSION}`);
    return 0;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  switch (positionals[0] ?? "serve") {
    case "serve": {
      const udp = values["udp-listener"] ?? "auto";
      if (udp !== "auto" && udp !== "mmsg" && udp !== "deno") {
        console.error(
          `pvdns: --udp-listener must be auto, mmsg or deno: current value is "${udp}"`,
        );
        return 2;
      }
      const drain = values["drain-ms"] ?? String(DRAIN_MS);
      if (!/^\d{1,9}$/.test(drain)) {
        console.error(
          `pvdns: --drain-ms must be a whole number of milliseconds: current value is "${drain}"`,
        );
        return 2;
      }
      return await serve(values.config, udp, Number(drain));
    }
    case "check":
      return await check(values.config);
    case "route":
      return await route(positionals.slice(1), values);
    case "doctor":
      return await doctor(values.config);
    case "pvds":
      return await pvdsCommand(values, { json: values.json });
    case "query": {
      const [name, type] = positionals.slice(1);
      if (!name) {
        console.error(`pvdns: query needs a NAME\n${USAGE}`);
        return 2;
      }
      return await queryCommand(values, name, type ?? "A", { pvd: values.pvd, json: values.json });
    }
    case "flush":
      return await flushCommand(values, values.pvd);
    case "reload":
      return await reloadCommand(values);
    case "stats":
      return await statsCommand(values);
    default:
      console.error(`pvdns: unknown command "${positionals[0]}"\n${USAGE}`);
      return 2;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));

/**
 * Run the real `pvdns` daemon (`main.ts serve`) as a child process, the way a user would,
 * with the same Deno binary that runs the tests (`Deno.execPath()`).
 *
 * The daemon prints `pvdns: listening on ADDR:PORT (udp, tcp)` per listener and then
 * `pvdns: ready`; {@linkcode startPvdns} returns once that last line appeared, or throws with
 * everything the daemon printed. Config errors make the daemon exit 2 with the errors on
 * stderr; use {@linkcode runPvdns} for such one-shot CLI runs.
 *
 * The daemon runs with the Deno permissions of `deno task start` ({@linkcode START_PERMISSIONS},
 * read from deno.json), plus exactly what README "Permissions" tells a user to add for a config
 * file: its folder, the files it names (`caFile`), its Unix control socket, and `--allow-ffi` for
 * RA discovery or `--udp-listener mmsg`. So every e2e test shows that the narrowed set suffices.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import * as jsonc from "jsonc-parser";
import denoConfig from "../deno.json" with { type: "json" };
import { exec, type ExecResult, inNetns, terminate } from "./exec.ts";

/** The repository root, found from this file's location (testkit/ → ../..). */
export const REPO_ROOT: string = fileURLToPath(new URL("..", import.meta.url)).replace(
  /\/$/,
  "",
);
/** The CLI entry point. */
export const MAIN_TS: string = `${REPO_ROOT}/main.ts`;

/** The permission flags of deno.json's `start` task (`--allow-*`, `--deny-*`, `--no-prompt`). */
export const START_PERMISSIONS: readonly string[] = Object.freeze(
  denoConfig.tasks.start.split(/\s+/).filter((word) => /^--(allow|deny)-|^--no-prompt$/.test(word)),
);

/**
 * The V8 flags of deno.json's `start` task (a small young generation: short GC pauses, see the
 * README's "Choices worth knowing"), so that tests and benches run the daemon as users do.
 */
export const START_V8_FLAGS: readonly string[] = Object.freeze(
  denoConfig.tasks.start.split(/\s+/).filter((word) => word.startsWith("--v8-flags=")),
);

/**
 * The argv that runs `main.ts ARGS` with this test run's Deno, the start task's V8 flags and
 * `permissions` (by default all: CLI commands and benches; the daemon of
 * {@linkcode startPvdns} gets the narrowed set).
 */
export function pvdnsArgv(
  args: readonly string[],
  permissions: readonly string[] = ["--allow-all"],
): string[] {
  return [
    Deno.execPath(),
    "run",
    ...START_V8_FLAGS,
    ...permissions,
    "--unstable-net",
    MAIN_TS,
    ...args,
  ];
}

/** Paths and capabilities a daemon needs beyond {@linkcode START_PERMISSIONS}. */
export interface ExtraPermissions {
  /** Paths added to `--allow-read`. */
  readonly read?: readonly string[];
  /** Paths added to `--allow-write`. */
  readonly write?: readonly string[];
  /** Add `--allow-ffi`. */
  readonly ffi?: boolean;
}

/**
 * {@linkcode START_PERMISSIONS} with `extra` merged in: paths appended to the lists of
 * `--allow-read=`/`--allow-write=` (a flag without a list already allows every path).
 */
export function servePermissions(extra: ExtraPermissions = {}): string[] {
  const out = [...START_PERMISSIONS];
  const add = (flag: string, paths: readonly string[] = []) => {
    if (paths.length === 0) return;
    const i = out.findIndex((f) => f === flag || f.startsWith(`${flag}=`));
    if (i < 0) out.push(`${flag}=${paths.join(",")}`);
    else if (out[i] !== flag) out[i] = `${out[i]},${paths.join(",")}`;
  };
  add("--allow-read", extra.read);
  add("--allow-write", extra.write);
  if (extra.ffi && !out.includes("--allow-ffi")) out.push("--allow-ffi");
  return out;
}

/**
 * What README "Permissions" says a config adds to the start task's set: read of its folder (the
 * daemon watches it for edits) and of every `caFile`, read and write of a Unix control socket,
 * `--allow-ffi` when it listens for router advertisements or `args` ask for the mmsg listener.
 */
export function configPermissions(
  configText: string | undefined,
  configPath: string | undefined,
  args: readonly string[] = [],
): ExtraPermissions {
  const read: string[] = [], write: string[] = [];
  let ffi = args.some((a, i) =>
    a === "--udp-listener=mmsg" || (a === "--udp-listener" && args[i + 1] === "mmsg")
  );
  if (configPath) read.push(configPath.slice(0, configPath.lastIndexOf("/")));
  const c = (configText === undefined ? undefined : jsonc.parse(configText)) as
    | {
      caFile?: unknown;
      pvds?: { caFile?: unknown }[];
      control?: { listen?: unknown };
      discovery?: { ra?: unknown };
    }
    | undefined;
  if (c && typeof c === "object") {
    const pvds = Array.isArray(c.pvds) ? c.pvds : [];
    for (const ca of [c.caFile, ...pvds.map((p) => p?.caFile)]) {
      if (typeof ca === "string") read.push(ca);
    }
    const control = c.control?.listen;
    if (typeof control === "string" && control.startsWith("unix:")) {
      read.push(control.slice("unix:".length));
      write.push(control.slice("unix:".length));
    }
    if (Array.isArray(c.discovery?.ra) && c.discovery.ra.length > 0) ffi = true;
  }
  return { read, write, ffi };
}

/** Options of {@linkcode startPvdns}. */
export interface StartPvdnsOptions {
  /** Config file text (JSON with comments); written to a temp file and passed as `--config`. */
  configText?: string;
  /** Config as an object, serialised to JSON (ignored when `configText` is given). */
  config?: unknown;
  /** More arguments after `serve [--config FILE]`. */
  args?: string[];
  /** Run the daemon inside this network namespace. */
  netns?: string;
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** How long to wait for `pvdns: ready`. @default 15000 */
  readyTimeoutMs?: number;
  /**
   * Deno permission flags instead of {@linkcode START_PERMISSIONS} plus what the config needs
   * ({@linkcode configPermissions}).
   */
  permissions?: readonly string[];
  /**
   * Run this command instead of `deno run … main.ts serve …` (e.g. `deno task start`), in the
   * repository root; `configText`, `config`, `args` and `permissions` are then ignored.
   */
  argv?: readonly string[];
  /**
   * A command the daemon is run through, e.g. `["prlimit", "--nofile=8192:8192", "--"]` or
   * `["sh", "-c", 'umask 000; exec "$@"', "sh"]` (inside the network namespace, when one is given).
   */
  wrap?: readonly string[];
}

/** A running daemon. */
export interface PvdnsProcess {
  readonly pid: number;
  /** Path of the config file written for it (undefined when none). */
  readonly configPath?: string;
  /** Every line printed so far, stdout and stderr interleaved as they arrived. */
  output(): string[];
  /** `ADDR:PORT` of each `pvdns: listening on …` line. */
  listeners(): string[];
  /** Wait (bounded) for an output line matching `re`. */
  waitForLine(re: RegExp, timeoutMs?: number): Promise<string>;
  /** Send a signal (e.g. `"SIGHUP"` to reload). */
  signal(sig: Deno.Signal): void;
  /** Resolves with the exit status when the daemon ends on its own or by stop(). */
  readonly exited: Promise<Deno.CommandStatus>;
  /** SIGTERM, at most 5 s for a clean exit, then SIGKILL; removes the temp config. */
  stop(): Promise<Deno.CommandStatus>;
}

async function pumpLines(
  stream: ReadableStream<Uint8Array>,
  sink: string[],
  onLine: () => void,
): Promise<void> {
  let rest = "";
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      rest += value;
      const parts = rest.split("\n");
      rest = parts.pop() ?? "";
      for (const p of parts) sink.push(p);
      if (parts.length) onLine();
    }
  } finally {
    if (rest) sink.push(rest);
    onLine();
    reader.releaseLock();
  }
}

/**
 * Start `pvdns serve` and wait until it says `pvdns: ready`.
 *
 * @example
 * const pvdns = await startPvdns({ config: { listen: ["127.101.0.9:53"], pvds: [...] } });
 * try { ... } finally { await pvdns.stop(); }
 */
export async function startPvdns(options: StartPvdnsOptions = {}): Promise<PvdnsProcess> {
  let configPath: string | undefined;
  const text = options.argv ? undefined : options.configText ??
    (options.config === undefined ? undefined : JSON.stringify(options.config, null, 2));
  if (text !== undefined) {
    // A folder of its own: the daemon may read (and watch) that folder and nothing else of /tmp.
    const dir = await Deno.makeTempDir({ prefix: "pvdns-config-" });
    configPath = `${dir}/pvdns.jsonc`;
    await Deno.writeTextFile(configPath, text);
  }
  const args = ["serve", ...(configPath ? ["--config", configPath] : []), ...(options.args ?? [])];
  const permissions = options.permissions ??
    servePermissions(configPermissions(text, configPath, options.args));
  const argv = inNetns(options.netns, [
    ...(options.wrap ?? []),
    ...(options.argv ?? pvdnsArgv(args, permissions)),
  ]);
  const child = new Deno.Command(argv[0]!, {
    args: argv.slice(1),
    cwd: REPO_ROOT,
    env: { NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1", ...options.env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();

  const lines: string[] = [];
  let wake: (() => void) | undefined;
  const notify = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const pumps = Promise.all([
    pumpLines(child.stdout, lines, notify),
    pumpLines(child.stderr, lines, notify),
  ]);
  let done = false;
  const exited = (async () => {
    const status = await child.status;
    await pumps;
    done = true;
    notify();
    return status;
  })();

  const waitForLine = async (re: RegExp, timeoutMs = 15_000): Promise<string> => {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const hit = lines.find((l) => re.test(l));
      if (hit !== undefined) return hit;
      if (done) throw new Error(`pvdns exited before printing ${re}:\n${lines.join("\n")}`);
      const left = end - Date.now();
      if (left <= 0) throw new Error(`pvdns: no line matching ${re} in ${timeoutMs} ms`);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        wake = resolve;
        timer = setTimeout(resolve, Math.min(left, 200));
      });
      clearTimeout(timer);
    }
  };

  let stopping: Promise<Deno.CommandStatus> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      try {
        return await terminate(child, exited, 5000);
      } finally {
        if (configPath) {
          const dir = configPath.slice(0, configPath.lastIndexOf("/"));
          await Deno.remove(dir, { recursive: true }).catch(() => {});
        }
      }
    })();
    return stopping;
  };

  try {
    await waitForLine(/pvdns: ready/, options.readyTimeoutMs ?? 15_000);
  } catch (e) {
    await stop();
    throw new Error(
      `${(e as Error).message}\n--- pvdns output (${argv.join(" ")}) ---\n${lines.join("\n")}`,
    );
  }

  return {
    pid: child.pid,
    configPath,
    output: () => [...lines],
    listeners: () =>
      lines.flatMap((l) => {
        const m = /pvdns: listening on (\S+)/.exec(l);
        return m ? [m[1]!] : [];
      }),
    waitForLine,
    signal: (sig) => child.kill(sig),
    exited,
    stop,
  };
}

/** Options of {@linkcode runPvdns}. */
export interface RunPvdnsOptions {
  netns?: string;
  env?: Record<string, string>;
  /** @default 15000 */
  timeoutMs?: number;
  stdin?: string;
  /** Deno permission flags. @default ["--allow-all"] */
  permissions?: readonly string[];
}

/**
 * Run one CLI command to completion, e.g. `runPvdns(["serve", "--config", bad])` → `code: 2`.
 */
export async function runPvdns(
  args: readonly string[],
  options: RunPvdnsOptions = {},
): Promise<ExecResult> {
  return await exec(pvdnsArgv(args, options.permissions), {
    netns: options.netns,
    cwd: REPO_ROOT,
    env: { NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1", ...options.env },
    timeoutMs: options.timeoutMs ?? 15_000,
    stdin: options.stdin,
  });
}

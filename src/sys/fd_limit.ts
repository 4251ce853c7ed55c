/**
 * Descriptors: the limit pvdns sets for itself, the sampler that tells when it is near, and how
 * an `accept()` that fails for want of one is survived.
 *
 * pvdns's bounds decide how many descriptors it can hold: each DNS TCP listener up to
 * `limits.tcpConnections`, each HTTP listener up to `limits.httpConnections`, each upstream
 * exchange its socket (`limits.maxUpstreamQueries`), and what the runtime holds besides
 * (listening sockets, epoll, pipes to `ip`, the config watch): {@linkcode FD_MARGIN}. At start
 * the soft `RLIMIT_NOFILE` is raised to that sum when it is lower (Deno itself starts with the
 * soft limit at the hard one, so it rarely is), or set to `limits.openFiles` when the config
 * names it; never above the hard limit. A hard limit below the need is said in one log line with
 * the numbers.
 *
 * Deno has no setrlimit: with the ffi permission pvdns calls libc's `getrlimit`/`setrlimit`,
 * else it runs `prlimit --pid SELF` (util-linux; the start task allows it), else it says it
 * cannot. Deno refuses to read `/proc/self/…` below `--allow-all`, so the sampler counts
 * `/proc/self/fd` itself only when it may, and otherwise runs `ls -U /proc/PID/fd` (every
 * {@linkcode FD_SAMPLE_MS}: about 2 ms of one process).
 *
 * @module
 */

import type { LimitsConfig } from "../config/types.ts";

/** Descriptors counted for the runtime besides pvdns's bounds. */
export const FD_MARGIN = 256;
/** How often the sampler counts open descriptors, ms. */
export const FD_SAMPLE_MS = 5000;
/** Use past this share of the limit is reported (once per crossing). */
const NEAR = 0.9;
/** …and must fall below this share before the next crossing counts. */
const CLEAR = 0.8;
const RLIMIT_NOFILE = 7;

/** A soft and a hard descriptor limit; `Infinity` for unlimited. */
export interface FileLimit {
  readonly soft: number;
  readonly hard: number;
}

/** What the descriptor need is computed from. */
export interface OpenFilesNeedOptions {
  /** The config's bounds (HTTP defaults applied here when absent). */
  readonly limits: LimitsConfig;
  /** DNS listeners (each has a TCP side). */
  readonly dnsTcpListeners: number;
  /** HTTP listeners (control, metrics). */
  readonly httpListeners: number;
}

/** The descriptors pvdns's bounds can hold, with how the sum was made (for the log line). */
export function openFilesNeeded(o: OpenFilesNeedOptions): { total: number; parts: string } {
  const tcp = o.limits.tcpConnections * o.dnsTcpListeners;
  const http = (o.limits.httpConnections ?? 64) * o.httpListeners;
  const upstream = o.limits.maxUpstreamQueries;
  return {
    total: tcp + http + upstream + FD_MARGIN,
    parts: `tcpConnections ${o.limits.tcpConnections} × ${o.dnsTcpListeners} DNS listeners + ` +
      `httpConnections ${o.limits.httpConnections ?? 64} × ${o.httpListeners} HTTP listeners + ` +
      `maxUpstreamQueries ${upstream} + ${FD_MARGIN} margin`,
  };
}

/** Reads and sets this process's descriptor limit. */
export interface RlimitAccess {
  /** How: libc through FFI, or the `prlimit` command. */
  readonly via: "ffi" | "prlimit";
  get(): Promise<FileLimit>;
  set(limit: FileLimit): Promise<void>;
}

const granted = (d: Deno.PermissionDescriptor) => Deno.permissions.querySync(d).state === "granted";

/** The way to read and set the limit that the permissions allow, or undefined. */
export function rlimitAccess(): RlimitAccess | undefined {
  if (Deno.build.os !== "linux") return undefined;
  if (granted({ name: "ffi" })) {
    try {
      return ffiRlimit();
    } catch { /* no glibc: try prlimit */ }
  }
  if (granted({ name: "run", command: "prlimit" })) return prlimitAccess();
  return undefined;
}

function ffiRlimit(): RlimitAccess {
  const lib = Deno.dlopen("libc.so.6", {
    getrlimit: { parameters: ["i32", "buffer"], result: "i32" },
    setrlimit: { parameters: ["i32", "buffer"], result: "i32" },
  });
  const pair = new BigUint64Array(2); // struct rlimit { rlim_cur, rlim_max } on 64-bit Linux
  const bytes = new Uint8Array(pair.buffer);
  const INFINITY = 0xffffffffffffffffn;
  const num = (v: bigint) => v === INFINITY ? Infinity : Number(v);
  const big = (v: number) => v === Infinity ? INFINITY : BigInt(v);
  return {
    via: "ffi",
    get() {
      if (lib.symbols.getrlimit(RLIMIT_NOFILE, bytes) !== 0) {
        return Promise.reject(new Error("getrlimit failed"));
      }
      return Promise.resolve({ soft: num(pair[0]!), hard: num(pair[1]!) });
    },
    set(limit) {
      pair[0] = big(limit.soft);
      pair[1] = big(limit.hard);
      if (lib.symbols.setrlimit(RLIMIT_NOFILE, bytes) !== 0) {
        return Promise.reject(new Error("setrlimit failed"));
      }
      return Promise.resolve();
    },
  };
}

/** The descriptor limit of process `pid` through util-linux's `prlimit`. */
export function prlimitAccess(pid: number = Deno.pid): RlimitAccess {
  const run = async (args: string[]) => {
    const out = await new Deno.Command("prlimit", {
      args: ["--pid", String(pid), ...args],
      stdin: "null",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    if (!out.success) throw new Error(new TextDecoder().decode(out.stderr).trim() || "failed");
    return text;
  };
  const num = (v: string | undefined) => v === "unlimited" ? Infinity : Number(v);
  const text = (v: number) => v === Infinity ? "unlimited" : String(v);
  return {
    via: "prlimit",
    async get() {
      const fields = (await run(["--nofile", "--raw", "--noheadings", "--output=SOFT,HARD"]))
        .trim().split(/\s+/);
      const limit = { soft: num(fields[0]), hard: num(fields[1]) };
      if (!(limit.soft > 0 && limit.hard > 0)) throw new Error(`prlimit said "${fields}"`);
      return limit;
    },
    async set(limit) {
      await run([`--nofile=${text(limit.soft)}:${text(limit.hard)}`]);
    },
  };
}

/** Options of {@linkcode setOpenFilesLimit}. */
export interface SetOpenFilesOptions extends OpenFilesNeedOptions {
  /** Where the one line about the limit goes. */
  readonly log: (line: string) => void;
  /** How the limit is read and set. @default {@linkcode rlimitAccess}() */
  readonly access?: RlimitAccess | undefined;
}

/**
 * Sets the soft descriptor limit to what the bounds need (raised only) or to
 * `limits.openFiles`, within the hard limit, and logs one line saying what it is. Resolves with
 * the limit in force (undefined when it cannot be read); never throws.
 */
export async function setOpenFilesLimit(o: SetOpenFilesOptions): Promise<FileLimit | undefined> {
  const need = openFilesNeeded(o);
  const access = "access" in o ? o.access : rlimitAccess();
  if (!access) {
    o.log(
      `pvdns: open files: cannot read or set the descriptor limit (needs --allow-run=prlimit or ` +
        `--allow-ffi); the bounds need ${need.total} (${need.parts})`,
    );
    return undefined;
  }
  try {
    const now = await access.get();
    const asked = o.limits.openFiles;
    const want = asked ?? Math.max(now.soft, need.total);
    const soft = Math.min(want, now.hard);
    if (soft !== now.soft) await access.set({ soft, hard: now.hard });
    const wanted = asked === undefined
      ? `the bounds need ${need.total} (${need.parts})`
      : `limits.openFiles is ${asked}`;
    if (want > now.hard || soft < need.total) {
      o.log(
        `pvdns: open files: limit ${soft} is below what pvdns needs: ${wanted}, hard limit ` +
          `${now.hard}; raise the hard limit (systemd LimitNOFILE=, ulimit -Hn) or lower the ` +
          `bounds, else connections fail with EMFILE past ${soft}`,
      );
    } else {
      o.log(`pvdns: open files: limit ${soft} (hard ${now.hard}, via ${access.via}); ${wanted}`);
    }
    return { soft, hard: now.hard };
  } catch (e) {
    o.log(`pvdns: open files: cannot set the descriptor limit: ${(e as Error).message}`);
    return undefined;
  }
}

/** True when `e` says the process (EMFILE) or the system (ENFILE) is out of descriptors. */
export function isFdExhaustion(e: unknown): boolean {
  const code = (e as { code?: unknown })?.code;
  if (code === "EMFILE" || code === "ENFILE") return true;
  return /\(os error 2[34]\)/.test(String((e as Error)?.message ?? ""));
}

/** Options of {@linkcode AcceptRetry}. */
export interface AcceptRetryOptions {
  /** The listener, as log lines name it (`http 127.0.0.1:9153`). */
  readonly name: string;
  readonly log: (line: string) => void;
  /** Told `fds` when an accept failed for want of descriptors. */
  readonly onLimit: (limit: string) => void;
}

/**
 * Survives failing `accept()` calls as Go's net/http does: wait 5 ms, doubling up to 1 s, and
 * accept again. A run of failures logs one line when it starts and one when accepting works again.
 */
export class AcceptRetry {
  #o: AcceptRetryOptions;
  #delay = 0;
  #failures = 0;
  #wake: (() => void) | undefined;

  constructor(options: AcceptRetryOptions) {
    this.#o = options;
  }

  /** After a failed accept: counts it, and resolves when the next may be tried (or on wake). */
  failed(e: unknown): Promise<void> {
    if (isFdExhaustion(e)) this.#o.onLimit("fds");
    this.#failures++;
    this.#delay = this.#delay ? Math.min(this.#delay * 2, 1000) : 5;
    if (this.#failures === 1) {
      this.#o.log(
        `pvdns: ${this.#o.name}: accept failed: ${(e as Error)?.message ?? e}; retrying`,
      );
    }
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, this.#delay);
      this.#wake = done;
    });
  }

  /** After an accept that worked. */
  succeeded(): void {
    if (this.#failures === 0) return;
    this.#o.log(`pvdns: ${this.#o.name}: accepting again after ${this.#failures} failed accepts`);
    this.#failures = 0;
    this.#delay = 0;
  }

  /** Ends a wait at once (the listener is closing). */
  wake(): void {
    this.#wake?.();
  }
}

/**
 * Counts this process's open descriptors: `/proc/self/fd` when Deno lets it be read, else
 * `ls -U /proc/PID/fd` when `ls` may be run, else undefined (nothing to count with).
 */
export function fdCounter(): (() => Promise<number | undefined>) | undefined {
  if (Deno.build.os !== "linux") return undefined;
  try {
    for (const _ of Deno.readDirSync("/proc/self/fd")) break;
    return () => {
      let n = 0;
      for (const _ of Deno.readDirSync("/proc/self/fd")) n++;
      return Promise.resolve(n - 1); // less the one reading the folder
    };
  } catch { /* NotCapable below --allow-all */ }
  if (!granted({ name: "run", command: "ls" })) return undefined;
  return async () => {
    const out = await new Deno.Command("ls", {
      args: ["-U", `/proc/${Deno.pid}/fd`],
      stdin: "null",
      stderr: "null",
    }).output();
    if (!out.success) return undefined;
    let n = 0;
    for (const b of out.stdout) if (b === 10) n++;
    return n - 2; // less what the spawn holds meanwhile (the pipe ls writes to, a pidfd)
  };
}

/** Options of {@linkcode startFdMonitor}. */
export interface FdMonitorOptions {
  /** The soft limit in force; without it nothing is sampled. */
  readonly limit: number | undefined;
  /** Told `fds` once per crossing of 90 % of the limit. */
  readonly onLimit: (limit: string) => void;
  readonly log: (line: string) => void;
  /** @default {@linkcode fdCounter}() */
  readonly count?: (() => Promise<number | undefined>) | undefined;
  /** Sampling period, ms; 0: only when {@linkcode FdMonitor.sample} is called. @default FD_SAMPLE_MS */
  readonly sampleMs?: number;
}

/** A running descriptor sampler. */
export interface FdMonitor {
  /** Open descriptors at the last sample (undefined before one worked). */
  readonly open: number | undefined;
  /** Counts now (also what the timer does). */
  sample(): Promise<void>;
  close(): void;
}

/**
 * Samples the open descriptors; past 90 % of `limit` logs a line and counts `fds` once, and
 * again only after use fell below 80 %. A failing count (a spawn refused with EMFILE) is itself
 * counted as `fds`.
 */
export function startFdMonitor(o: FdMonitorOptions): FdMonitor {
  const count = "count" in o ? o.count : fdCounter();
  const limit = o.limit;
  let open: number | undefined;
  let near = false;
  let running: Promise<void> | undefined;
  const sampleOnce = async () => {
    if (!count || limit === undefined || limit === Infinity) return;
    let n: number | undefined;
    try {
      n = await count();
    } catch (e) {
      if (isFdExhaustion(e)) o.onLimit("fds");
      return;
    }
    if (n === undefined) return;
    open = n;
    if (!near && n >= limit * NEAR) {
      near = true;
      o.onLimit("fds");
      o.log(`pvdns: open files: ${n} of ${limit} in use (over ${NEAR * 100} %)`);
    } else if (near && n < limit * CLEAR) {
      near = false;
      o.log(`pvdns: open files: ${n} of ${limit} in use again`);
    }
  };
  const sample = () => running ??= sampleOnce().finally(() => running = undefined);
  const period = o.sampleMs ?? FD_SAMPLE_MS;
  const timer = period > 0 && count && limit !== undefined
    ? setInterval(() => void sample(), period)
    : undefined;
  if (timer !== undefined) Deno.unrefTimer(timer);
  return {
    get open() {
      return open;
    },
    sample,
    close() {
      clearInterval(timer);
    },
  };
}

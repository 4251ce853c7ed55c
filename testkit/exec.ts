/**
 * Run a command to completion with a hard time limit, optionally inside a network namespace.
 *
 * Every helper in `testkit` spawns through here so that no test can hang on a child:
 * the child gets SIGKILL when `timeoutMs` passes, and its output is always collected.
 *
 * @module
 */

/** What a finished command left behind. */
export interface ExecResult {
  /** Exit code; 137 style codes when killed by a signal (128 + signal number). */
  readonly code: number;
  /** Standard output, decoded as UTF-8. */
  readonly stdout: string;
  /** Standard error, decoded as UTF-8. */
  readonly stderr: string;
  /** True when the time limit killed the command. */
  readonly timedOut: boolean;
}

/** Options of {@linkcode exec}. */
export interface ExecOptions {
  /** Run as `ip netns exec NETNS cmd...`. */
  netns?: string;
  /** Kill the command after this long. @default 10000 */
  timeoutMs?: number;
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** Working directory. */
  cwd?: string;
  /** Bytes or text written to standard input, which is then closed. */
  stdin?: string | Uint8Array;
}

/** The argv that runs `cmd` inside `netns` (or `cmd` itself when `netns` is undefined). */
export function inNetns(netns: string | undefined, cmd: readonly string[]): string[] {
  return netns === undefined ? [...cmd] : ["ip", "netns", "exec", netns, ...cmd];
}

/**
 * Run `cmd` (argv, no shell) and wait for it, at most `timeoutMs`.
 *
 * @example
 * const r = await exec(["ip", "-br", "addr"], { netns: "pv1234x1" });
 */
export async function exec(cmd: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
  const argv = inNetns(options.netns, cmd);
  const [program, ...args] = argv;
  if (program === undefined) throw new Error("exec: empty command");
  const child = new Deno.Command(program, {
    args,
    env: options.env,
    cwd: options.cwd,
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
  }, options.timeoutMs ?? 10_000);
  try {
    if (options.stdin !== undefined) {
      const bytes = typeof options.stdin === "string"
        ? new TextEncoder().encode(options.stdin)
        : options.stdin;
      const writer = child.stdin.getWriter();
      try {
        await writer.write(bytes);
      } finally {
        await writer.close().catch(() => {});
      }
    }
    const out = await child.output();
    const decoder = new TextDecoder();
    return {
      code: out.code,
      stdout: decoder.decode(out.stdout),
      stderr: decoder.decode(out.stderr),
      timedOut,
    };
  } finally {
    clearTimeout(timer);
  }
}

/** Like {@linkcode exec} but throws, with the command's output, unless it exits 0. */
export async function execOk(cmd: readonly string[], options: ExecOptions = {}): Promise<string> {
  const r = await exec(cmd, options);
  if (r.code !== 0) {
    const where = options.netns === undefined ? "" : ` (netns ${options.netns})`;
    throw new Error(
      `${cmd.join(" ")}${where} exited ${r.code}${r.timedOut ? " (timed out)" : ""}\n` +
        `stdout: ${r.stdout}\nstderr: ${r.stderr}`,
    );
  }
  return r.stdout;
}

/** Resolve after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Stops a child: SIGTERM now, SIGKILL if `done` has not settled after `graceMs`; resolves with
 * what `done` gives (its status or output). Signals to a child that already exited are ignored.
 */
export async function terminate<T>(
  child: Deno.ChildProcess,
  done: Promise<T>,
  graceMs = 3000,
): Promise<T> {
  const signal = (sig: Deno.Signal) => {
    try {
      child.kill(sig);
    } catch { /* already gone */ }
  };
  signal("SIGTERM");
  const killer = setTimeout(() => signal("SIGKILL"), graceMs);
  try {
    return await done;
  } finally {
    clearTimeout(killer);
  }
}

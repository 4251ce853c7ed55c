/**
 * What the bench needs from the machine: the Debian tools (installed when missing, with their
 * packaged services kept from starting), the clock-tick rate, a process's CPU time and RSS from
 * `/proc`, and a registry of every child process so that nothing outlives the run.
 *
 * @module
 */

import { exec, execOk } from "../testkit/exec.ts";

/** The programs the bench drives, and the Debian package of each. */
export const TOOLS = {
  dnsperf: "dnsperf",
  nsd: "nsd",
  dnsmasq: "dnsmasq-base",
  unbound: "unbound",
  taskset: "util-linux",
} as const;

export type Tool = keyof typeof TOOLS;

const SEARCH = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/** The absolute path of `name` in PATH or the usual sbin directories, or undefined. */
export function findProgram(name: string): string | undefined {
  const dirs = [...(Deno.env.get("PATH") ?? "").split(":").filter(Boolean), ...SEARCH];
  for (const d of dirs) {
    try {
      const st = Deno.statSync(`${d}/${name}`);
      if (st.isFile && ((st.mode ?? 0) & 0o111) !== 0) return `${d}/${name}`;
    } catch { /* not there */ }
  }
  return undefined;
}

/**
 * Finds every tool; installs the missing ones with apt-get (`apt-get update` first). Package
 * scripts must not start NSD or Unbound on this machine's port 53: a policy-rc.d that forbids
 * every service action is in place for the install (as `.ci/run` does), and removed after if it
 * was ours. The packaged configs are never used: each server gets its own.
 */
export async function ensureTools(log: (line: string) => void): Promise<Record<Tool, string>> {
  const missing = (Object.keys(TOOLS) as Tool[]).filter((t) => !findProgram(t));
  if (missing.length) {
    const packages = [...new Set(missing.map((t) => TOOLS[t]))];
    log(`installing ${packages.join(" ")} (missing: ${missing.join(" ")})`);
    const policy = "/usr/sbin/policy-rc.d";
    let ours = false;
    try {
      Deno.statSync(policy);
    } catch {
      Deno.writeTextFileSync(policy, "#!/bin/sh\nexit 101\n", { mode: 0o755 });
      ours = true;
    }
    try {
      const env = { DEBIAN_FRONTEND: "noninteractive" };
      await execOk(["apt-get", "-q", "-o", "Acquire::Retries=3", "update"], {
        env,
        timeoutMs: 300_000,
      });
      await execOk([
        "apt-get",
        "-q",
        "-y",
        "-o",
        "Dpkg::Options::=--force-confdef",
        "-o",
        "Dpkg::Options::=--force-confold",
        "install",
        "--no-install-recommends",
        ...packages,
      ], { env, timeoutMs: 600_000 });
    } finally {
      if (ours) Deno.removeSync(policy);
    }
  }
  const found = {} as Record<Tool, string>;
  for (const t of Object.keys(TOOLS) as Tool[]) {
    const path = findProgram(t);
    if (!path) throw new Error(`${t} (Debian package ${TOOLS[t]}) is missing after install`);
    found[t] = path;
  }
  return found;
}

/** Clock ticks per second of `/proc/PID/stat` times (`getconf CLK_TCK`, 100 on Linux). */
export async function clockTicks(): Promise<number> {
  const r = await exec(["getconf", "CLK_TCK"]);
  const n = Number(r.stdout.trim());
  return r.code === 0 && n > 0 ? n : 100;
}

function childrenOf(pid: number): number[] {
  const out: number[] = [];
  try {
    for (const task of Deno.readDirSync(`/proc/${pid}/task`)) {
      const text = Deno.readTextFileSync(`/proc/${pid}/task/${task.name}/children`).trim();
      if (text) out.push(...text.split(/\s+/).map(Number));
    }
  } catch { /* gone */ }
  return out;
}

/** utime and stime (clock ticks) from a `/proc/…/stat` line; zeros when it is gone. */
function times(path: string): [number, number] {
  try {
    const stat = Deno.readTextFileSync(path);
    // Fields after "(comm)": state is field 3, utime 14, stime 15 (1-based).
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return [Number(f[11]), Number(f[12])];
  } catch {
    return [0, 0];
  }
}

/** The live descendants of `pid` (children, their children, …). */
export function descendants(pid: number): number[] {
  const out: number[] = [];
  const todo = childrenOf(pid);
  while (todo.length && out.length < 1000) {
    const p = todo.pop()!;
    out.push(p);
    todo.push(...childrenOf(p));
  }
  return out;
}

/** CPU time of a process and its live descendants, in clock ticks. */
export interface CpuTicks {
  /** utime + stime, every thread (exited ones too) and every live descendant. */
  readonly total: number;
  /** stime: in the kernel. */
  readonly sys: number;
  /** utime + stime of the main thread alone (the event loop, for Deno). */
  readonly main: number;
}

/** The CPU ticks of `pid`, its threads and its live descendants. */
export function cpuTicks(pid: number): CpuTicks {
  let total = 0, sys = 0;
  for (const p of [pid, ...descendants(pid)]) {
    const [u, s] = times(`/proc/${p}/stat`);
    total += u + s;
    sys += s;
  }
  const [mu, ms] = times(`/proc/${pid}/task/${pid}/stat`);
  return { total, sys, main: mu + ms };
}

/** `b - a`, field by field. */
export function ticksSince(a: CpuTicks, b: CpuTicks): CpuTicks {
  return { total: b.total - a.total, sys: b.sys - a.sys, main: b.main - a.main };
}

function cpuLine(): { busy: number; total: number } {
  const line = Deno.readTextFileSync("/proc/stat").split("\n")[0]!; // "cpu  user nice system idle …"
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  const idle = (f[3] ?? 0) + (f[4] ?? 0); // idle + iowait
  return { busy: total - idle, total };
}

/**
 * How busy the whole machine is over `ms` (0..1, all cores). Taken while every server of the
 * bench is idle, it is the load of everything else: another bench or a test run skews figures.
 */
export async function machineBusy(ms = 500): Promise<number> {
  const a = cpuLine();
  await new Promise((r) => setTimeout(r, ms));
  const b = cpuLine();
  return b.total > a.total ? (b.busy - a.busy) / (b.total - a.total) : 0;
}

/** VmRSS of `pid` in KiB. */
export function rssKib(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(Deno.readTextFileSync(`/proc/${pid}/status`));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]);
}

/**
 * Datagrams the kernel dropped at the UDP socket bound to `address:port` (the `drops` column of
 * /proc/net/udp: the socket's receive buffer was full). Per socket, so the load generator's own
 * drops do not count; 0 when no such socket is found.
 */
export function udpSocketDrops(address: string, port: number): number {
  const local = `${
    address.split(".").reverse().map((b) => Number(b).toString(16).padStart(2, "0")).join("")
  }:${port.toString(16).padStart(4, "0")}`.toUpperCase();
  let drops = 0;
  for (const line of Deno.readTextFileSync("/proc/net/udp").split("\n").slice(1)) {
    const cols = line.trim().split(/\s+/);
    if (cols[1] === local) drops += Number(cols.at(-1)) || 0;
  }
  return drops;
}

/** Every child still running, so that an interrupted run can still stop them. */
const live = new Set<Deno.ChildProcess>();

/** Tracks `child` until it exits. */
export function track(child: Deno.ChildProcess): void {
  live.add(child);
  child.status.finally(() => live.delete(child)).catch(() => {});
}

/** SIGKILL every tracked child (SIGINT/SIGTERM of the runner, or a last resort). */
export function killAll(): void {
  for (const c of live) {
    try {
      c.kill("SIGKILL");
    } catch { /* gone */ }
  }
}

/** On SIGINT/SIGTERM: kill every child, then exit 130. */
export function killChildrenOnSignal(): void {
  const onSignal = () => {
    killAll();
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
}

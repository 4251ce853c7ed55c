/**
 * Network namespaces and veth pairs for tests (needs root and `ip` from iproute2).
 *
 * Names are short and unique per process: `pv<pid>n<k>` for namespaces and `pv<pid>v<k>a|b`
 * for veth ends (Linux caps interface names at 15 bytes), so concurrent test processes never
 * clash. `lo` is brought up in every namespace created here. Delete what you create in a
 * `finally` — or use {@linkcode withNetns}, which always does; deleting a namespace first ends
 * the processes still running in it (they can only be ones a test started there) and removes
 * its `/etc/netns/NAME` directory.
 *
 * @module
 */

import { exec, execOk, type ExecOptions, type ExecResult, sleep } from "./exec.ts";

let counter = 0;

/** A network namespace created by {@linkcode createNetns}. */
export interface Netns {
  /** Namespace name, usable with `ip netns exec`. */
  readonly name: string;
  /** Run a command inside the namespace (bounded, see {@linkcode exec}). */
  exec(cmd: readonly string[], options?: Omit<ExecOptions, "netns">): Promise<ExecResult>;
  /** End processes left in it, delete it and its /etc/netns directory. Idempotent. */
  delete(): Promise<void>;
}

/** Options of {@linkcode createNetns}. */
export interface NetnsOptions {
  /** Name prefix, at most 4 characters. @default "pv" */
  prefix?: string;
  /**
   * Also put a ULA (`fd00:53::1/128`) on `lo`, so glibc asks for AAAA too. glibc's
   * getaddrinfo (`getent ahosts`) uses AI_ADDRCONFIG: it asks for A only when the namespace
   * has a non-loopback IPv4 address (and any 127.x.y.z other than 127.0.0.1 counts as one!)
   * but no IPv6 address other than ::1. @default false
   */
  dualStack?: boolean;
}

/** Run `cmd` inside namespace `ns` (bounded; never throws for a non-zero exit). */
export function execIn(
  ns: string,
  cmd: readonly string[],
  options: Omit<ExecOptions, "netns"> = {},
): Promise<ExecResult> {
  return exec(cmd, { ...options, netns: ns });
}

/** Write `/etc/netns/NS/resolv.conf`, which `ip netns exec NS` bind-mounts on /etc/resolv.conf. */
export async function writeNetnsResolvConf(ns: string, text: string): Promise<void> {
  await Deno.mkdir(`/etc/netns/${ns}`, { recursive: true });
  await Deno.writeTextFile(`/etc/netns/${ns}/resolv.conf`, text);
}

/** SIGTERM, then SIGKILL, every process still in `ns` (bounded). */
async function killAllIn(ns: string): Promise<void> {
  for (const sig of ["TERM", "KILL"]) {
    for (let i = 0; i < 20; i++) {
      const r = await exec(["ip", "netns", "pids", ns], { timeoutMs: 3000 });
      const pids = r.stdout.split(/\s+/).filter((p) => /^\d+$/.test(p));
      if (!pids.length) return;
      if (i === 0) await exec(["kill", `-${sig}`, ...pids], { timeoutMs: 3000 });
      await sleep(100);
    }
  }
}

/** Delete namespace `ns` after ending what runs in it, and remove `/etc/netns/NS`. */
export async function deleteNetns(ns: string): Promise<void> {
  await killAllIn(ns);
  await exec(["ip", "netns", "delete", ns], { timeoutMs: 5000 });
  await Deno.remove(`/etc/netns/${ns}`, { recursive: true }).catch(() => {});
}

/**
 * Create a fresh network namespace with `lo` up.
 *
 * @example
 * const ns = await createNetns();
 * try { await ns.exec(["ip", "-br", "addr"]); } finally { await ns.delete(); }
 */
export async function createNetns(options: NetnsOptions = {}): Promise<Netns> {
  const name = `${(options.prefix ?? "pv").slice(0, 4)}${Deno.pid}n${++counter}`;
  await execOk(["ip", "netns", "add", name]);
  let deleted = false;
  const ns: Netns = {
    name,
    exec: (cmd, o = {}) => execIn(name, cmd, o),
    async delete() {
      if (deleted) return;
      deleted = true;
      await deleteNetns(name);
    },
  };
  try {
    await execOk(["ip", "link", "set", "lo", "up"], { netns: name });
    if (options.dualStack) {
      await execOk(["ip", "addr", "add", "fd00:53::1/128", "dev", "lo", "nodad"], { netns: name });
    }
  } catch (e) {
    await ns.delete();
    throw e;
  }
  return ns;
}

/** Create a namespace, run `fn` with it, and always delete it afterwards. */
export async function withNetns<T>(
  fn: (ns: Netns) => Promise<T>,
  options: NetnsOptions = {},
): Promise<T> {
  const ns = await createNetns(options);
  try {
    return await fn(ns);
  } finally {
    await ns.delete();
  }
}

/** One end of a veth pair. */
export interface VethEnd {
  /** Namespace of this end; undefined = the test's own (host) namespace. */
  netns?: string;
  /** Addresses with prefix length, e.g. `["10.99.0.1/24", "fd99::1/64"]`. */
  addresses?: string[];
}

/** A veth pair created by {@linkcode createVethPair}. */
export interface VethPair {
  /** Interface name of end a. */
  readonly a: string;
  /** Interface name of end b. */
  readonly b: string;
  /** Delete the pair (deleting either end removes both). Idempotent. */
  delete(): Promise<void>;
}

/**
 * Create a veth pair, move each end into its namespace, add the addresses and bring both up.
 * IPv6 addresses are added `nodad` so they are usable at once.
 */
export async function createVethPair(
  endA: VethEnd,
  endB: VethEnd,
): Promise<VethPair> {
  const k = ++counter;
  const a = `pv${Deno.pid}v${k}a`.slice(-15);
  const b = `pv${Deno.pid}v${k}b`.slice(-15);
  await execOk(["ip", "link", "add", a, "type", "veth", "peer", "name", b]);
  let deleted = false;
  const pair: VethPair = {
    a,
    b,
    async delete() {
      if (deleted) return;
      deleted = true;
      // Whichever end still exists (namespaces may already be gone, taking the pair with them).
      await exec(["ip", "link", "delete", a], { netns: endA.netns });
      await exec(["ip", "link", "delete", b], { netns: endB.netns });
    },
  };
  try {
    for (const [ifname, end] of [[a, endA], [b, endB]] as const) {
      if (end.netns !== undefined) {
        await execOk(["ip", "link", "set", ifname, "netns", end.netns]);
      }
      for (const addr of end.addresses ?? []) {
        const extra = addr.includes(":") ? ["nodad"] : [];
        await execOk(["ip", "addr", "add", addr, "dev", ifname, ...extra], { netns: end.netns });
      }
      await execOk(["ip", "link", "set", ifname, "up"], { netns: end.netns });
    }
  } catch (e) {
    await pair.delete();
    throw e;
  }
  return pair;
}

/**
 * src/sys/fd_limit.ts on real processes: the need computed from the bounds, the soft limit set
 * on a child (through `prlimit`, as the daemon does to itself under the start task) in each case
 * (raised, left alone, `openFiles`, hard limit too low), libc's getrlimit through FFI, the two
 * ways of counting descriptors agreeing with the kernel, and the 90 % crossing counted once.
 *
 * @module
 */

import assert from "node:assert/strict";
import { validateConfig } from "../../src/config/parse.ts";
import {
  FD_MARGIN,
  fdCounter,
  openFilesNeeded,
  prlimitAccess,
  rlimitAccess,
  setOpenFilesLimit,
  startFdMonitor,
} from "../../src/sys/fd_limit.ts";
import { REPO_ROOT } from "../../testkit/pvdns_process.ts";

const config = (limits: Record<string, unknown> = {}) =>
  validateConfig({
    listen: ["127.0.0.1:53"],
    pvds: [{ id: "a.example", servers: ["192.0.2.1"], sourceAddresses: ["127.0.0.1"] }],
    limits,
  });

/** The soft and hard descriptor limits of `pid`, read from the kernel. */
async function limitsOf(pid: number): Promise<[number, number]> {
  const line = (await Deno.readTextFile(`/proc/${pid}/limits`)).split("\n")
    .find((l) => l.startsWith("Max open files"))!;
  const [soft, hard] = line.slice("Max open files".length).trim().split(/\s+/);
  return [Number(soft), Number(hard)];
}

/** A `sleep` whose descriptor limit starts at `soft:hard`. */
function sleeper(soft: number, hard: number): Deno.ChildProcess {
  return new Deno.Command("prlimit", {
    args: [`--nofile=${soft}:${hard}`, "sleep", "60"],
    stdin: "null",
    stdout: "null",
  }).spawn();
}

Deno.test("openFilesNeeded: DNS TCP and HTTP listeners × their bounds, upstream sockets, a margin", () => {
  const n = openFilesNeeded({
    limits: config({ tcpConnections: 100, httpConnections: 10, maxUpstreamQueries: 500 }).limits,
    dnsTcpListeners: 3,
    httpListeners: 2,
  });
  assert.equal(n.total, 300 + 20 + 500 + FD_MARGIN);
  assert.match(n.parts, /tcpConnections 100 × 3 DNS listeners \+ httpConnections 10 × 2/);
  const defaults = openFilesNeeded({
    limits: config().limits,
    dnsTcpListeners: 1,
    httpListeners: 1,
  });
  assert.equal(defaults.total, 256 + 64 + 1024 + FD_MARGIN);
});

Deno.test("setOpenFilesLimit: the soft limit of a process set through prlimit", async (t) => {
  const need = openFilesNeeded({ limits: config().limits, dnsTcpListeners: 1, httpListeners: 2 });
  const run = async (soft: number, hard: number, limits = config().limits) => {
    const child = sleeper(soft, hard);
    try {
      // prlimit sets the limit and execs sleep: wait until the exec has happened.
      for (let i = 0; i < 200; i++) {
        const cmd = await Deno.readTextFile(`/proc/${child.pid}/cmdline`).catch(() => "");
        if (cmd.startsWith("sleep")) break;
        await new Promise((r) => setTimeout(r, 10));
      }
      const lines: string[] = [];
      const set = await setOpenFilesLimit({
        limits,
        dnsTcpListeners: 1,
        httpListeners: 2,
        log: (l) => lines.push(l),
        access: prlimitAccess(child.pid),
      });
      return { set, lines, kernel: await limitsOf(child.pid) };
    } finally {
      child.kill("SIGKILL");
      await child.status;
    }
  };

  await t.step("below the need: raised to it, within the hard limit", async () => {
    const r = await run(100, 8000);
    assert.deepEqual(r.kernel, [need.total, 8000]);
    assert.deepEqual(r.set, { soft: need.total, hard: 8000 });
    assert.equal(r.lines.length, 1);
    assert.match(r.lines[0]!, new RegExp(`limit ${need.total} \\(hard 8000, via prlimit\\)`));
  });

  await t.step("already above the need: left alone", async () => {
    const r = await run(6000, 8000);
    assert.deepEqual(r.kernel, [6000, 8000]);
  });

  await t.step("limits.openFiles: exactly that", async () => {
    const r = await run(6000, 8000, config({ openFiles: 3000 }).limits);
    assert.deepEqual(r.kernel, [3000, 8000]);
    assert.match(r.lines[0]!, /limits\.openFiles is 3000/);
  });

  await t.step(
    "hard limit below the need: the hard limit, and one line with the numbers",
    async () => {
      const r = await run(100, 300);
      assert.deepEqual(r.kernel, [300, 300]);
      assert.equal(r.lines.length, 1);
      assert.match(
        r.lines[0]!,
        new RegExp(
          `limit 300 is below what pvdns needs: the bounds need ${need.total} .*hard limit 300`,
        ),
      );
    },
  );
});

Deno.test("rlimitAccess with FFI reads what the kernel says", async () => {
  const access = rlimitAccess();
  assert.equal(access?.via, "ffi"); // the tests run with --allow-all
  const [soft, hard] = await limitsOf(Deno.pid);
  assert.deepEqual(await access!.get(), { soft, hard });
  await access!.set({ soft, hard }); // the same: nothing changes for the test process
});

Deno.test("fdCounter: /proc/self/fd, and ls under the start task's permissions, agree with the kernel", async (t) => {
  await t.step("in this process (--allow-all reads /proc/self/fd)", async () => {
    const count = fdCounter()!;
    const before = (await count())!;
    const files = [Deno.openSync("/dev/null"), Deno.openSync("/dev/null")];
    assert.equal(await count(), before + 2);
    for (const f of files) f.close();
    assert.equal(await count(), before);
  });

  await t.step("in a child that may only run ls", async () => {
    const script = await Deno.makeTempFile({ suffix: ".ts" });
    try {
      await Deno.writeTextFile(
        script,
        `import { fdCounter } from "${REPO_ROOT}/src/sys/fd_limit.ts";\n` +
          `const n = await fdCounter()!();\n` +
          `console.log(n);\n` +
          `await Deno.stdin.read(new Uint8Array(1));\n`,
      );
      const child = new Deno.Command(Deno.execPath(), {
        args: ["run", "--no-prompt", "--allow-run=ls", script],
        cwd: REPO_ROOT,
        stdin: "piped",
        stdout: "piped",
        stderr: "inherit",
      }).spawn();
      const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      let out = "";
      while (!out.includes("\n")) {
        const { value, done } = await reader.read();
        if (done) break;
        out += value;
      }
      // The child waits on stdin: its descriptors are what they were when it counted.
      const kernel = [...Deno.readDirSync(`/proc/${child.pid}/fd`)].length;
      const writer = child.stdin.getWriter();
      await writer.write(new Uint8Array([10]));
      await writer.close();
      await reader.cancel();
      await child.status;
      const counted = Number(out.trim());
      assert.ok(Number.isInteger(counted), `the child said "${out}"`);
      // Within what the spawn holds for a moment (a pipe, a pidfd, /dev/null).
      assert.ok(Math.abs(counted - kernel) <= 3, `ls counted ${counted}, the kernel has ${kernel}`);
    } finally {
      await Deno.remove(script);
    }
  });
});

Deno.test("startFdMonitor: past 90 % of the limit counted and logged once per crossing", async () => {
  const count = fdCounter()!;
  const base = (await count())!;
  const extra = Math.max(10, base);
  const limit = Math.floor((base + extra) / 0.9);
  const counted: string[] = [], lines: string[] = [];
  const monitor = startFdMonitor({
    limit,
    onLimit: (l) => counted.push(l),
    log: (l) => lines.push(l),
    sampleMs: 0,
    count,
  });
  const open = () => Array.from({ length: extra }, () => Deno.openSync("/dev/null"));
  try {
    await monitor.sample();
    assert.deepEqual(counted, []);
    let files = open();
    await monitor.sample();
    assert.deepEqual(counted, ["fds"]);
    assert.match(lines[0]!, new RegExp(`open files: ${base + extra} of ${limit} in use`));
    await monitor.sample();
    assert.deepEqual(counted, ["fds"], "counted again without falling back first");
    for (const f of files) f.close();
    await monitor.sample();
    assert.match(lines[1]!, /in use again/);
    files = open();
    await monitor.sample();
    assert.deepEqual(counted, ["fds", "fds"]);
    assert.equal(monitor.open, base + extra);
    for (const f of files) f.close();
  } finally {
    monitor.close();
  }
});

/**
 * The daemon's Unix control socket is created with its final mode, 0660, never briefly wider:
 * `pvdns serve` runs with umask 000 (under which a socket is born 0777), while a python3 child
 * `lstat`s the socket's path in a tight loop from before the daemon starts until it is ready,
 * and reports every mode it saw. A socket left 0777 (no umask around the bind) fails this
 * every time; a bind followed by a chmod leaves a window of some microseconds that the loop
 * catches often but not always: tests/control/http_listener_test.ts proves the mode at
 * creation deterministically.
 *
 * @module
 */

import assert from "node:assert/strict";
import { PYTHON } from "../../testkit/dnspython.ts";
import { type PvdnsProcess, startPvdns } from "../../testkit/pvdns_process.ts";
import { startTwoPvds } from "../../testkit/two_pvds.ts";

const WATCH = `
import json, os, select, stat, sys, time
path, deadline, modes, looks = sys.argv[1], time.time() + 60, set(), 0
print("watching", flush=True)
while time.time() < deadline:
    looks += 1
    try:
        modes.add(stat.S_IMODE(os.lstat(path).st_mode))
    except FileNotFoundError:
        pass
    if looks % 256 == 0 and select.select([sys.stdin], [], [], 0)[0]:
        break
print(json.dumps({"modes": sorted(modes), "looks": looks}), flush=True)
`;

Deno.test("the control socket is mode 0660 from the moment it exists, under umask 000", async () => {
  const f = await startTwoPvds();
  const dir = await Deno.makeTempDir({ prefix: "pvdns-sockmode-" });
  await Deno.chmod(dir, 0o755);
  const path = `${dir}/pvdns.sock`;
  const watcher = new Deno.Command(PYTHON, {
    args: ["-c", WATCH, path],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = watcher.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  const nextLine = async () => {
    while (!out.includes("\n")) {
      const { value, done } = await lines.read();
      if (done) break;
      out += value;
    }
    const i = out.indexOf("\n");
    const line = out.slice(0, i);
    out = out.slice(i + 1);
    return line;
  };
  let pvdns: PvdnsProcess | undefined;
  try {
    assert.equal(await nextLine(), "watching");
    pvdns = await startPvdns({
      config: f.config({ control: { listen: `unix:${path}` } }),
      wrap: ["sh", "-c", 'umask 000; exec "$@"', "sh"],
    });
    const writer = watcher.stdin.getWriter();
    await writer.write(new Uint8Array([10]));
    await writer.close();
    const seen = JSON.parse(await nextLine()) as { modes: number[]; looks: number };
    assert.deepEqual(
      seen.modes.map((m) => m.toString(8)),
      ["660"],
      `modes seen in ${seen.looks} looks`,
    );
    // The umask was really 000 for the daemon: what it did not set itself is wide open.
    const umask = /^Umask:\s+(\d+)/m.exec(await Deno.readTextFile(`/proc/${pvdns.pid}/status`));
    assert.equal(umask?.[1], "0000");
  } finally {
    await lines.cancel().catch(() => {});
    try {
      watcher.kill("SIGKILL");
    } catch { /* exited */ }
    await watcher.status;
    await pvdns?.stop();
    await f.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

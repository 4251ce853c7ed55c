/**
 * A child process that prints one JSON object per line (test scripts run inside a network
 * namespace): its lines are collected as they come, and a test waits, bounded, for one that
 * matches. Lines that are not JSON are kept as `{ "text": line }`; stderr is kept for errors.
 *
 * @module
 */

import { inNetns, sleep, terminate } from "./exec.ts";

/** A running JSON-lines child. */
export interface JsonLinesProcess {
  /** Every line so far, parsed. */
  readonly lines: readonly Record<string, unknown>[];
  /** Standard error so far. */
  stderr(): string;
  /** Waits (bounded) for a line after index `from` matching `pred`; throws with the output. */
  waitFor(
    pred: (line: Record<string, unknown>) => boolean,
    options?: { timeoutMs?: number; from?: number; what?: string },
  ): Promise<Record<string, unknown>>;
  /** SIGTERM, at most 5 s for a clean exit, then SIGKILL. Idempotent. */
  stop(): Promise<void>;
}

/** Starts `cmd` (inside `netns` when given) and collects its stdout lines. */
export function startJsonLines(cmd: readonly string[], netns?: string): JsonLinesProcess {
  const argv = inNetns(netns, cmd);
  const child = new Deno.Command(argv[0]!, {
    args: argv.slice(1),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines: Record<string, unknown>[] = [];
  let err = "";
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  const pump = async (stream: ReadableStream<Uint8Array>, onLine: (l: string) => void) => {
    let buf = "";
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      buf += decoder.decode(chunk, { stream: true });
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        onLine(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
      }
    }
    if (buf) onLine(buf);
  };
  const pumps = Promise.all([
    pump(child.stdout, (l) => {
      try {
        const v = JSON.parse(l);
        lines.push(typeof v === "object" && v ? v : { text: l });
      } catch {
        lines.push({ text: l });
      }
    }),
    pump(child.stderr, (l) => err += l + "\n"),
  ]);
  let stopped: Promise<void> | undefined;
  return {
    lines,
    stderr: () => err,
    async waitFor(pred, o = {}) {
      const end = Date.now() + (o.timeoutMs ?? 10_000);
      for (;;) {
        const hit = lines.slice(o.from ?? 0).find(pred);
        if (hit) return hit;
        if (Date.now() > end || exited) {
          throw new Error(
            `no line for ${o.what ?? "the condition"}${exited ? " (process exited)" : ""}\n` +
              `stdout:\n${lines.map((l) => JSON.stringify(l)).join("\n")}\nstderr:\n${err}`,
          );
        }
        await sleep(50);
      }
    },
    stop() {
      stopped ??= (async () => {
        await terminate(child, status, 5000);
        await pumps;
      })();
      return stopped;
    },
  };
}

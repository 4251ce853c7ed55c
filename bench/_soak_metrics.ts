/**
 * pvdns's Prometheus `/metrics` for the soak (`bench/soak.ts`): a scrape over a plain TCP
 * connection to the loopback metrics listener (HTTP/1.0; no `fetch`, so no proxy setting can
 * send it anywhere else), the text exposition parsed into samples, and sums by label.
 *
 * @module
 */

/** One sample line: `name{label="value",…} number`. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const SAMPLE = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/;
const LABEL = /(\w+)="((?:[^"\\]|\\.)*)"/g;

/** Parses the Prometheus text exposition (comments skipped). */
export function parseExposition(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = SAMPLE.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(LABEL)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** GET /metrics from `address:port` (at most `timeoutMs`) and parse it. */
export async function scrapeMetrics(
  address: string,
  port: number,
  timeoutMs = 5000,
): Promise<Sample[]> {
  const conn = await Deno.connect({ hostname: address, port });
  const timer = setTimeout(() => conn.close(), timeoutMs);
  try {
    await conn.write(
      new TextEncoder().encode(`GET /metrics HTTP/1.0\r\nHost: ${address}:${port}\r\n\r\n`),
    );
    const chunks: Uint8Array[] = [];
    const buf = new Uint8Array(64 * 1024);
    for (let i = 0; i < 10_000; i++) { // 640 MB at most: bounded
      const n = await conn.read(buf);
      if (n === null) break;
      chunks.push(buf.slice(0, n));
    }
    const text = new TextDecoder().decode(concat(chunks));
    const split = text.indexOf("\r\n\r\n");
    const status = text.slice(0, text.indexOf("\r\n"));
    if (split < 0 || !/^HTTP\/1\.\d 200/.test(status)) {
      throw new Error(`metrics ${address}:${port}: ${status || "no HTTP response"}`);
    }
    return parseExposition(text.slice(split + 4));
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* closed by the timer */ }
  }
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/**
 * The samples of metric `name` whose labels match `where`, summed by the labels `by`
 * (key: their values joined with `/`; `by` empty: one key `""`).
 */
export function sumBy(
  samples: readonly Sample[],
  name: string,
  by: readonly string[] = [],
  where: Record<string, string> = {},
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of samples) {
    if (s.name !== name) continue;
    if (Object.entries(where).some(([k, v]) => s.labels[k] !== v)) continue;
    const key = by.map((k) => s.labels[k] ?? "").join("/");
    out[key] = (out[key] ?? 0) + s.value;
  }
  return out;
}

/** The sum of metric `name` over the samples matching `where`. */
export function total(
  samples: readonly Sample[],
  name: string,
  where: Record<string, string> = {},
): number {
  return sumBy(samples, name, [], where)[""] ?? 0;
}

/**
 * A body read while it streams, with a bound in bytes: past it the reading stops at once and the
 * source is let go (breaking out of `for await` cancels a web `ReadableStream` and destroys a
 * Node stream), so a hostile peer cannot make pvdns buffer more than the bound. Shared by the DoH
 * transport, the `/.well-known/pvd` fetcher and the control API's request bodies.
 *
 * @module
 */

/**
 * The bytes of `source`, joined, or `undefined` as soon as they pass `maxBytes`.
 *
 * @example
 * ```ts ignore
 * const body = await readBounded(res.body, 65535);
 * if (body === undefined) throw new Error("too long");
 * ```
 */
export async function readBounded(
  source: AsyncIterable<Uint8Array>,
  maxBytes: number,
): Promise<Uint8Array | undefined> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of source) {
    total += chunk.length;
    if (total > maxBytes) return undefined;
    chunks.push(chunk);
  }
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/**
 * Request bodies read with a bound that holds while they stream: a `Content-Length` over the
 * bound is refused (413) before a byte is read, and a body without one (chunked) is counted as it
 * arrives and cut at the bound. What is kept is never more than the bound, whatever the client
 * sends (an attack run: a 1.5 GB POST was buffered whole before its size was checked).
 *
 * @module
 */

import { readBounded } from "../transports/bounded_body.ts";
import { problem } from "./http_problem.ts";

/** The largest DoH message (RFC 8484 §6: a DNS message, 65,535 bytes at most). */
export const DOH_MAX_BYTES = 65535;

/** A 413 problem for a body over `maxBytes`; `connection: close` since the rest is not read. */
function tooLarge(detail: string): Response {
  return problem(413, "too-large", "Request body too large", detail, {}, {
    connection: "close",
  });
}

/**
 * The 413 (or 400) problem that `req`'s `Content-Length` earns against `maxBytes`, or undefined
 * when it is absent or within the bound. Reads nothing.
 */
export function declaredBodyProblem(req: Request, maxBytes: number): Response | undefined {
  const declared = req.headers.get("content-length");
  if (declared === null) return undefined;
  if (!/^\d+$/.test(declared.trim())) {
    return problem(400, "bad-request", "Bad request", `content-length: "${declared}" is no size`);
  }
  const n = Number(declared.trim());
  if (n > maxBytes) {
    return tooLarge(`content-length ${n} is over the ${maxBytes} bytes this endpoint takes`);
  }
  return undefined;
}

/**
 * Reads `req`'s body, at most `maxBytes` of it: the bytes, or a problem response (413 when the
 * declared or the streamed size passes the bound; the stream is cancelled there).
 *
 * @example
 * ```ts ignore
 * const body = await readBody(req, 65535);
 * if (body instanceof Response) return body;
 * ```
 */
export async function readBody(req: Request, maxBytes: number): Promise<Uint8Array | Response> {
  const declared = declaredBodyProblem(req, maxBytes);
  if (declared) return declared;
  if (!req.body) return new Uint8Array(0);
  let body: Uint8Array | undefined;
  try {
    body = await readBounded(req.body, maxBytes);
  } catch (e) {
    return problem(400, "bad-request", "Bad request", `the body: ${(e as Error).message}`);
  }
  return body ?? tooLarge(`the body passed the ${maxBytes} bytes this endpoint takes`);
}

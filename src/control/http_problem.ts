/**
 * The responses of pvdns's HTTP endpoints: RFC 9457 problem documents
 * (`application/problem+json`, a `detail` that names the bad value), JSON bodies, and boolean
 * query parameters read or refused with a problem.
 *
 * @module
 */

const JSON_TYPE = "application/json";
const PROBLEM_TYPE = "application/problem+json";

/** An RFC 9457 problem response. */
export function problem(
  status: number,
  kind: string,
  title: string,
  detail: string,
  extra: Record<string, unknown> = {},
  headers: Record<string, string> = {},
): Response {
  return new Response(
    JSON.stringify(
      { type: `urn:pvdns:problem:${kind}`, title, status, detail, ...extra },
      null,
      2,
    ) +
      "\n",
    { status, headers: { "content-type": PROBLEM_TYPE, ...headers } },
  );
}

/** A JSON body (pretty-printed, newline-terminated) with `contentType`. */
export function json(body: unknown, contentType = JSON_TYPE): Response {
  return new Response(JSON.stringify(body, null, 2) + "\n", {
    headers: { "content-type": contentType },
  });
}

/** Reads a boolean query parameter (`1`/`true`/`0`/`false`; absent is false), or a 400 problem. */
export function flag(params: URLSearchParams, name: string): boolean | Response {
  const v = params.get(name);
  if (v === null || v === "" || v === "0" || v === "false") return false;
  if (v === "1" || v === "true") return true;
  return problem(400, "bad-request", "Bad request", `${name}: "${v}" is not 0, 1, true or false`);
}

/**
 * The folder stack of `src/`, from the ground up: a folder may import its own files and the
 * folders listed before it, never one listed after it. `tools/check_layers.ts` (part of
 * `deno task check`) holds the real import graph against this table. A new folder goes into
 * this list where its imports put it; an import against the list is redesigned, not exempted.
 *
 * @module
 */

/** Each folder of `src/` with the one concern it holds, lowest floor first. */
export const LAYERS: readonly (readonly [folder: string, holds: string])[] = [
  ["dns", "the DNS message codec: wire form, the query pvdns sends, scrubbing, stored answers"],
  ["config", "the config file → the typed, frozen model (schema, values, cross checks)"],
  ["sys", "what Deno does not give: descriptor limits, a UDP socket's descriptor"],
  ["cache", "the per-PvD answer cache and its byte-bounded slab"],
  ["host", "reading the host: ip, resolvectl, nmcli, resolv.conf, its own addresses"],
  ["listen", "the DNS listeners: UDP (plain and batched), TCP"],
  ["policy", "who may ask, which PvD answers, the leak guard, route checks"],
  ["transports", "one file per upstream wire: UDP, TCP, DoT, DoH"],
  ["upstream", "the servers of one PvD: order, retries, answer trust"],
  ["pvd", "PvD discovery: RAs, RFC 8801 additional information, the registry, the JSON view"],
  ["service", "the running stub: pipeline, PvD set, metrics"],
  ["control", "the HTTP control API and metrics listener"],
  ["client", "the library: in-process and over the control API"],
  ["daemon", "`pvdns serve`: composing the service, its listeners, watches and signals"],
  ["cli", "the command line: argument parsing, local and remote commands"],
];

/**
 * `pvdns route`: the routing decision for a name, in words a person can check.
 *
 * @module
 */

import type { Config } from "../config/types.ts";
import { TYPE_NUMBERS } from "../dns/wire.ts";
import { type Route, Router } from "./router.ts";
import { describeClaim } from "./zone_claims.ts";

/** What {@linkcode explainRoute} looks at. */
export interface ExplainInput {
  /** The name to route. */
  readonly name: string;
  /** A type name (`AAAA`) or number. @default "A" */
  readonly type?: string;
  /** The client address the query would come from. */
  readonly from?: string | undefined;
  /** The listen address (`ADDR:PORT`) the query would arrive on. */
  readonly listener?: string | undefined;
  /** A PvD named by the caller. */
  readonly pvd?: string | undefined;
}

const STEP_TEXT: Record<Route["step"], string> = {
  special: "0 special-use name",
  explicit: "1 explicit PvD (API)",
  listener: "1 listener bound to a PvD",
  rule: "2 policy rule",
  zone: "3 longest DNS zone",
  reverse: "3 reverse zone of a PvD prefix",
  client: "4 client address in a PvD prefix",
  default: "5 default PvD",
};

/**
 * Routes `input` with the config's router and describes the decision line by line, with the
 * zone claims that were refused and would otherwise have decided (`refused:` lines).
 *
 * @param config The PvDs, rules and listeners to route with (a config file's, or the PvDs in
 *   force in a running daemon).
 * @throws {RangeError} for an unknown type name or listener
 */
export function explainRoute(
  config: Pick<Config, "listen" | "pvds" | "rules">,
  input: ExplainInput,
): { route: Route; lines: string[] } {
  const type = (input.type ?? "A").toUpperCase();
  const qtype = /^\d+$/.test(type) ? Number(type) : TYPE_NUMBERS[type];
  if (qtype === undefined) throw new RangeError(`Unknown record type: "${input.type}"`);
  let qname = input.name.toLowerCase();
  if (!qname.endsWith(".")) qname += ".";
  let listener;
  if (input.listener !== undefined) {
    listener = config.listen.find((l) => l.text === input.listener || l.address === input.listener);
    if (!listener) throw new RangeError(`Not a configured listener: "${input.listener}"`);
  }
  const router = new Router({ pvds: config.pvds, rules: config.rules });
  const route = router.route({
    qname,
    qtype,
    client: input.from,
    listener,
    explicitPvd: input.pvd,
  });
  const lines = [
    `query:    ${qname} ${type}${input.from ? ` from ${input.from}` : ""}${
      listener ? ` on ${listener.text}` : ""
    }`,
    `step:     ${STEP_TEXT[route.step]}`,
  ];
  const refused = router.refusedClaims(qname).map((c) => `refused:  ${describeClaim(c)}`);
  if (route.kind === "local") {
    const what = typeof route.answer === "string" ? route.answer : "local records";
    lines.push(...refused, `answer:   ${what}, made by pvdns (${route.reason}); nothing is sent`);
    return { route, lines };
  }
  if (route.rule !== undefined) lines.push(`rule:     rules[${route.rule}]`);
  if (route.zone) {
    const claim = router.claims.find((c) => c.pvd === route.pvd && c.zone === route.zone);
    const network = claim && claim.source !== "config"
      ? ` from the network (${claim.source}), accepted: ${claim.detail}`
      : "";
    lines.push(`zone:     ${route.zone}${network}`);
  }
  lines.push(...refused);
  const pvd = config.pvds.find((p) => p.id === route.pvd)!;
  lines.push(`pvd:      ${pvd.id}${pvd.implicit ? " (implicit)" : ""}`);
  for (const s of pvd.servers) {
    const source = pvd.sourceAddresses.find((a) => a.includes(":") === (s.family === 6));
    lines.push(`server:   ${s.text} (${s.protocol}) from ${source ?? "?"}`);
  }
  if (route.fallback.length) {
    lines.push(`fallback: ${route.fallback.join(", ")} (only if ${pvd.id} fails)`);
  } else {
    lines.push(`fallback: none: if ${pvd.id} fails the answer is SERVFAIL`);
  }
  return { route, lines };
}

/**
 * The operator commands of `pvdns` that talk to a running daemon over its control API:
 * `pvds`, `query`, `flush`, `reload`, `stats` (in the spirit of `resolvectl`), and `route --daemon`
 * (the routing decision with the daemon's PvDs in force). `main.ts` parses
 * the arguments and calls these; each returns the exit status.
 *
 * Exit status: 0 done, 1 the daemon answered with an error (or the query's rcode was not
 * NOERROR), 2 usage (including a name or type the daemon rejects), 3 the daemon could not be
 * reached.
 *
 * @module
 */

import type { DnsJson } from "../dns/json.ts";
import { typeName } from "../dns/json.ts";
import { Type } from "../dns/wire.ts";
import type { Config } from "../config/types.ts";
import { pvdConfigFromInfo, type PvdInfo, type PvdZoneJson } from "../pvd/pvd_info.ts";
import { type ExplainInput, explainRoute } from "../policy/explain.ts";
import { describeClaim } from "../policy/zone_claims.ts";
import { selectSource } from "../client/address_selection.ts";
import { ControlError } from "../client/errors.ts";
import { connect, type ControlClient, DEFAULT_CONTROL } from "../client/remote.ts";

/** Where to reach the daemon, from `--control`/`--token` or the environment. */
export interface ControlTarget {
  /** `--control URL`. */
  readonly control?: string | undefined;
  /** `--token TOKEN`. */
  readonly token?: string | undefined;
}

/** Other sockets tried when neither `--control` nor `PVDNS_CONTROL` names one. */
const FALLBACK_SOCKETS = ["/run/pvdns/pvdns.sock"];

/** Picks the control URL: `--control`, `PVDNS_CONTROL`, `/run/pvdns.sock`, `/run/pvdns/pvdns.sock`. */
function controlUrl(target: ControlTarget): string {
  const given = target.control ?? Deno.env.get("PVDNS_CONTROL");
  if (given) return given;
  const exists = (path: string) => {
    try {
      return Deno.lstatSync(path).isSocket;
    } catch {
      return false;
    }
  };
  const path = DEFAULT_CONTROL.slice("unix:".length);
  if (exists(path)) return DEFAULT_CONTROL;
  const other = FALLBACK_SOCKETS.find(exists);
  return other ? `unix:${other}` : DEFAULT_CONTROL;
}

/** Runs `fn` with a client; turns control errors into a message and an exit status. */
async function withClient(
  target: ControlTarget,
  fn: (client: ControlClient) => Promise<number>,
): Promise<number> {
  const url = controlUrl(target);
  let client: ControlClient;
  try {
    client = connect(url, { token: target.token ?? Deno.env.get("PVDNS_TOKEN") });
  } catch (e) {
    console.error(`pvdns: ${(e as Error).message}`);
    return 2;
  }
  try {
    return await fn(client);
  } catch (e) {
    if (e instanceof ControlError) {
      if (e.status === 0) {
        console.error(
          `pvdns: the pvdns daemon is not reachable at ${url}: is \`pvdns serve\` running with a ` +
            `control listener? (choose another with --control URL or PVDNS_CONTROL)\n` +
            `  ${(e.cause as Error | undefined)?.message ?? e.message}`,
        );
        return 3;
      }
      console.error(`pvdns: ${e.problem?.detail ?? e.message}`);
      for (const line of e.problem?.errors ?? []) console.error(`  ${line}`);
      return e.status === 400 ? 2 : 1;
    }
    throw e;
  } finally {
    await client.close();
  }
}

/** Left-aligned columns, two spaces apart. */
function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd()).join("\n");
}

/** `pvdns pvds [--json]`: the PvDs in force. */
export function pvdsCommand(target: ControlTarget, options: { json?: boolean }): Promise<number> {
  return withClient(target, async (client) => {
    const pvds = await client.listPvds();
    if (options.json) {
      console.log(JSON.stringify({ pvds }, null, 2));
      return 0;
    }
    const list = (xs: readonly string[]) => xs.length ? xs.join(",") : "-";
    // A zone from the network shows its source; a refused one says so (why: the lines below).
    const zone = (z: PvdZoneJson) =>
      z.source === "config" ? z.zone : `${z.zone}(${z.source}${z.accepted ? "" : ",refused"})`;
    console.log(table([
      ["PVD", "ORIGIN", "KIND", "DEFAULT", "PRIO", "IFACE", "SOURCES", "SERVERS", "ZONES"],
      ...pvds.map((p: PvdInfo) => [
        p.id,
        p.origin,
        p.implicit ? "implicit" : "explicit",
        p.default ? "yes" : "no",
        String(p.priority),
        p.interface ?? "-",
        list(p.sourceAddresses),
        list(p.servers),
        list((p.zones ?? []).map(zone)),
      ]),
    ]));
    console.log(`${pvds.length} PvD(s)`);
    for (const p of pvds) {
      for (const z of p.zones ?? []) {
        if (!z.accepted) console.log(`refused: ${describeClaim({ pvd: p.id, ...z })}`);
      }
    }
    return 0;
  });
}

/**
 * `pvdns route NAME … --daemon`: the routing decision with the PvDs in force in the running
 * daemon (those it discovered too, with their zone verdicts), and the rules and listeners of
 * `base` (the `--config` file's; none without it).
 */
export function routeCommand(
  target: ControlTarget,
  input: ExplainInput,
  base: Pick<Config, "listen" | "rules"> = { listen: [], rules: [] },
): Promise<number> {
  return withClient(target, async (client) => {
    const pvds = (await client.listPvds()).map(pvdConfigFromInfo);
    let lines: string[];
    try {
      lines = explainRoute({ ...base, pvds }, input).lines;
    } catch (e) {
      console.error(`pvdns: ${(e as Error).message}`);
      return 2;
    }
    for (const l of lines) console.log(l);
    return 0;
  });
}

/** `pvdns query NAME [TYPE] [--pvd ID] [--json]`: one query through the daemon. */
export function queryCommand(
  target: ControlTarget,
  name: string,
  type: string,
  options: { pvd?: string | undefined; json?: boolean },
): Promise<number> {
  return withClient(target, async (client) => {
    const t0 = performance.now();
    const answer: DnsJson = await client.resolveJson(name, type, { pvd: options.pvd });
    const ms = performance.now() - t0;
    if (options.json) {
      console.log(JSON.stringify(answer, null, 2));
      return answer.Status === 0 ? 0 : 1;
    }
    const rcode = ["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED"][
      answer.Status
    ] ?? `RCODE${answer.Status}`;
    const q = answer.Question[0];
    console.log(`query:   ${q ? `${q.name} ${typeName(q.type)}` : name}`);
    for (const r of answer.Answer) {
      console.log(`answer:  ${r.name} ${r.TTL} IN ${typeName(r.type)} ${r.data}`);
    }
    if (answer.Answer.length === 0) {
      console.log(`answer:  none (${rcode === "NOERROR" ? "no record of that type" : rcode})`);
    }
    console.log(`status:  ${rcode}, from ${answer.source ?? "?"}, in ${ms.toFixed(1)} ms`);
    if (answer.pvd === null) {
      console.log("pvd:     none: pvdns answered itself (special-use name or rule)");
    } else {
      console.log(`pvd:     ${answer.pvd}`);
      const pvd = await client.getPvd(answer.pvd);
      const address = answer.Answer.find((r) => r.type === Type.A || r.type === Type.AAAA)?.data;
      const source = address && pvd ? selectSource(address, pvd.sourceAddresses) : undefined;
      if (source) {
        console.log(`source:  ${source} (bind to it to reach ${address} through ${answer.pvd})`);
      } else if (address && pvd) {
        const family = address.includes(":") ? 6 : 4;
        const has = pvd.sourceAddresses.join(", ") || "none";
        console.log(
          `source:  none: ${answer.pvd} has no IPv${family} source address (it has ${has})`,
        );
      } else if (pvd?.sourceAddresses.length) {
        console.log(`source:  ${pvd.sourceAddresses.join(", ")} (the PvD's source addresses)`);
      }
    }
    return answer.Status === 0 ? 0 : 1;
  });
}

/** `pvdns flush [--pvd ID]`: empties caches. */
export function flushCommand(target: ControlTarget, pvd: string | undefined): Promise<number> {
  return withClient(target, async (client) => {
    const n = await client.flush(pvd);
    console.log(
      `flushed ${n} cache entr${n === 1 ? "y" : "ies"} ${pvd ? `of PvD ${pvd}` : "of every PvD"}`,
    );
    return 0;
  });
}

/** `pvdns reload`: the daemon reads its config file again. */
export function reloadCommand(target: ControlTarget): Promise<number> {
  return withClient(target, async (client) => {
    const r = await client.reload();
    const parts = [
      ["added", r.added],
      ["changed", r.changed],
      ["removed", r.removed],
      ["listening on", r.listenersAdded],
      ["stopped", r.listenersRemoved],
    ].filter(([, ids]) => ids!.length).map(([label, ids]) =>
      `${label} ${(ids as string[]).join(", ")}`
    );
    console.log(`reloaded: ${parts.length ? parts.join("; ") : "nothing changed"}`);
    return 0;
  });
}

/** One sample of a text exposition. */
interface Sample {
  readonly name: string;
  readonly labels: Record<string, string>;
  readonly value: number;
}

/** Reads the samples of a Prometheus text exposition (enough of the format for pvdns's own). */
export function parseExposition(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    }
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** `pvdns stats`: a summary of the daemon's metrics, per PvD. */
export function statsCommand(target: ControlTarget): Promise<number> {
  return withClient(target, async (client) => {
    const samples = parseExposition(await client.metrics());
    const sum = (name: string, where: (l: Record<string, string>) => boolean = () => true) =>
      samples.filter((s) => s.name === name && where(s.labels)).reduce((a, s) => a + s.value, 0);
    const health = await client.health();
    const byProto = new Map<string, number>();
    for (const s of samples.filter((s) => s.name === "pvdns_dns_requests_total")) {
      byProto.set(s.labels.proto!, (byProto.get(s.labels.proto!) ?? 0) + s.value);
    }
    console.log(`pvdns ${health.version}, listening on ${health.listening.join(", ")}`);
    console.log(
      `queries:    ${sum("pvdns_dns_requests_total")} (${
        [...byProto].map(([p, n]) => `${p} ${n}`).join(", ") || "none yet"
      })`,
    );
    const rcodes = ["NOERROR", "NXDOMAIN", "SERVFAIL", "REFUSED"];
    const pvds = [
      ...new Set([
        ...samples.filter((s) => s.name === "pvdns_pvd_info").map((s) => s.labels.pvd!),
        ...samples.filter((s) => s.name === "pvdns_dns_responses_total").map((s) => s.labels.pvd!),
      ]),
    ];
    const rows = [[
      "PVD",
      "ANSWERS",
      ...rcodes,
      "CACHE-HITS",
      "MISSES",
      "HIT-RATE",
      "ENTRIES",
      "LEAKS-BLOCKED",
    ]];
    for (const pvd of pvds) {
      const of = (l: Record<string, string>) => l.pvd === pvd;
      const hits = sum("pvdns_cache_hits_total", of), misses = sum("pvdns_cache_misses_total", of);
      rows.push([
        pvd,
        String(sum("pvdns_dns_responses_total", of)),
        ...rcodes.map((r) =>
          String(sum("pvdns_dns_responses_total", (l) => of(l) && l.rcode === r))
        ),
        String(hits),
        String(misses),
        hits + misses ? `${((100 * hits) / (hits + misses)).toFixed(1)}%` : "-",
        String(sum("pvdns_cache_entries", of)),
        String(sum("pvdns_leak_blocked_total", of)),
      ]);
    }
    console.log(table(rows));
    console.log(
      `fallbacks:  ${sum("pvdns_cross_pvd_fallback_total")} queries sent to a rule's fallback PvD`,
    );
    console.log(
      `reloads:    ${sum("pvdns_reload_total", (l) => l.result === "success")} ok, ${
        sum("pvdns_reload_total", (l) => l.result === "failure")
      } refused`,
    );
    return 0;
  });
}

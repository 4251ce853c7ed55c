/**
 * Cross-checks of a config file (`config/parse.ts`). They read the raw value defensively so that
 * they
 * run, and report, even when zod found problems elsewhere in the file; a part zod rejects is
 * skipped here.
 *
 * @module
 */
import {
  DEFAULT_LISTEN,
  isLoopback,
  parseIp,
  parseListenAddress,
  parsePvdId,
  parseServer,
  show,
} from "./schema.ts";

type Raw = Record<string, unknown>;
const isObject = (v: unknown): v is Raw => typeof v === "object" && v !== null && !Array.isArray(v);
const list = (v: unknown): unknown[] => Array.isArray(v) ? v : [];
const listOrOne = (v: unknown): unknown[] => Array.isArray(v) ? v : v === undefined ? [] : [v];

function attempt<T>(parse: (text: string) => T, value: unknown): T | undefined {
  if (typeof value !== "string") return undefined;
  try {
    return parse(value);
  } catch {
    return undefined;
  }
}

const FAMILY_NAME = { 4: "IPv4", 6: "IPv6" } as const;

/**
 * The checks that relate one part of a config to another (ids, references, families, listeners),
 * as `PATH: MESSAGE` lines.
 *
 * @param raw The parsed file, before the schema.
 */
export function crossCheck(raw: unknown): string[] {
  if (!isObject(raw)) return [];
  const errors: string[] = [];
  const fail = (path: string, message: string) => void errors.push(`${path}: ${message}`);

  // PvD ids are unique; each PvD can reach its servers.
  const ids = new Set<string>();
  list(raw.pvds).forEach((pvd, i) => {
    if (!isObject(pvd)) return;
    const id = attempt(parsePvdId, pvd.id);
    if (id !== undefined && ids.has(id)) {
      fail(`pvds[${i}].id`, `${show(pvd.id)} is a duplicate PvD id`);
    }
    if (id !== undefined) ids.add(id);
    checkServers(pvd, `pvds[${i}]`, fail);
    const encrypted = list(pvd.servers).some((s) => {
      const server = attempt(parseServer, s);
      return server?.protocol === "tls" || server?.protocol === "https";
    });
    if (pvd.encryption === "strict" && !encrypted && list(pvd.servers).length > 0) {
      fail(`pvds[${i}].encryption`, `"strict" needs at least one tls:// or https:// server`);
    }
  });
  const knownPvd = (path: string, value: unknown): string | undefined => {
    const id = attempt(parsePvdId, value);
    if (id === undefined || ids.has(id)) return id;
    fail(path, `${show(value)} is not a known PvD id`);
  };

  const discovery = isObject(raw.discovery) ? raw.discovery : {};
  const discoveryOn = discovery.host === true || list(discovery.ra).length > 0;
  if ((raw.pvds === undefined || list(raw.pvds).length === 0) && !discoveryOn) {
    if (raw.pvds === undefined || Array.isArray(raw.pvds)) {
      fail("pvds", "at least one PvD is required unless discovery is on");
    }
  }

  // Listen addresses are unique; a listener's PvD exists.
  const listeners = new Map<string, string>();
  const used = (path: string, value: unknown) => {
    const address = attempt(parseListenAddress, value);
    if (address === undefined) return;
    const other = listeners.get(address.text);
    if (other === undefined) listeners.set(address.text, path);
    else if (path.startsWith("listen")) {
      fail(path, `${show(value)} is a duplicate listen address (see ${other})`);
    } else fail(path, `${show(value)} is already used by ${other}`);
  };
  (raw.listen === undefined ? [DEFAULT_LISTEN] : list(raw.listen)).forEach((entry, i) => {
    used(
      isObject(entry) ? `listen[${i}].address` : `listen[${i}]`,
      isObject(entry) ? entry.address : entry,
    );
    if (isObject(entry) && entry.pvd !== undefined) knownPvd(`listen[${i}].pvd`, entry.pvd);
  });
  const dnsListeners = new Set(listeners.keys());
  // No open resolver by accident: a listener other hosts can reach needs an allow list.
  if (raw.allow === undefined) {
    (raw.listen === undefined ? [] : list(raw.listen)).forEach((entry, i) => {
      const value = isObject(entry) ? entry.address : entry;
      const address = attempt(parseListenAddress, value);
      if (address && !isLoopback(address.address)) {
        fail(
          "allow",
          `required because listen[${i}] ${show(value)} is not a loopback address: ` +
            `list the client prefixes that may query (e.g. ["192.0.2.0/24"])`,
        );
      }
    });
  }

  // Control and metrics: their own ports, and a token when the control API is on TCP.
  const control = isObject(raw.control) ? raw.control : undefined;
  const controlTcp = typeof control?.listen === "string" && !control.listen.startsWith("unix:");
  if (controlTcp) {
    used("control.listen", control!.listen);
    const address = attempt(parseListenAddress, control!.listen);
    if (address && !isLoopback(address.address)) {
      fail(
        "control.listen",
        `${show(control!.listen)} is not a loopback address: ` +
          "the control API is never reachable from another host (use unix:PATH or 127.0.0.1:PORT)",
      );
    }
    if (control!.token === undefined) {
      fail(
        "control.token",
        "required when the control API listens on TCP (use unix:PATH otherwise)",
      );
    }
  }
  const metrics = isObject(raw.metrics) ? raw.metrics : undefined;
  if (metrics) used("metrics.listen", metrics.listen);

  // Rules: one action, known PvDs, configured listeners.
  list(raw.rules).forEach((rule, i) => {
    if (!isObject(rule)) return;
    const path = `rules[${i}]`;
    const hasPvd = rule.pvd !== undefined;
    if (hasPvd && rule.action !== undefined) fail(path, `has both "pvd" and "action"; give one`);
    if (!hasPvd && rule.action === undefined) {
      fail(path, `needs "pvd" (route to a PvD) or "action"`);
    }
    if (rule.action === "answer" && rule.answer === undefined) {
      fail(`${path}.answer`, `required when action is "answer"`);
    }
    if (rule.answer !== undefined && rule.action !== "answer") {
      fail(`${path}.answer`, `only allowed when action is "answer"`);
    }
    if (isObject(rule.match) && Object.keys(rule.match).length === 0) {
      fail(`${path}.match`, "needs at least one of suffix, client, listener, qtype");
    }
    const target = hasPvd ? knownPvd(`${path}.pvd`, rule.pvd) : undefined;
    if (!hasPvd && list(rule.fallback).length > 0) {
      fail(`${path}.fallback`, `only allowed with "pvd"`);
    }
    const fallbacks = new Set<string>();
    list(rule.fallback).forEach((value, j) => {
      const id = knownPvd(`${path}.fallback[${j}]`, value);
      if (id !== undefined && id === target) {
        fail(`${path}.fallback[${j}]`, `${show(value)} is the rule's own PvD`);
      } else if (id !== undefined && fallbacks.has(id)) {
        fail(`${path}.fallback[${j}]`, `${show(value)} is listed twice`);
      }
      if (id !== undefined) fallbacks.add(id);
    });
    const listener = isObject(rule.match) ? rule.match.listener : undefined;
    listOrOne(listener).forEach((value, j) => {
      const address = attempt(parseListenAddress, value);
      if (address !== undefined && !dnsListeners.has(address.text)) {
        const at = Array.isArray(listener)
          ? `${path}.match.listener[${j}]`
          : `${path}.match.listener`;
        fail(at, `${show(value)} is not a configured listen address`);
      }
    });
  });

  // Numbers that bound each other (defaults as in config/schema.ts).
  const number = (v: unknown, fallback: number) => typeof v === "number" ? v : fallback;
  const cache = isObject(raw.cache) ? raw.cache : {};
  const [minTtl, maxTtl] = [number(cache.minTtl, 0), number(cache.maxTtl, 86400)];
  if (minTtl > maxTtl) fail("cache.minTtl", `${minTtl} is greater than cache.maxTtl (${maxTtl})`);
  const upstream = isObject(raw.upstream) ? raw.upstream : {};
  const [timeout, deadline] = [number(upstream.timeoutMs, 2000), number(upstream.deadlineMs, 4500)];
  if (deadline < timeout) {
    const what = upstream.deadlineMs === undefined ? " (the default)" : "";
    fail("upstream.deadlineMs", `${deadline}${what} is less than upstream.timeoutMs (${timeout})`);
  }
  return errors;
}

/** Each server with an IP address needs a source address of its family; a DoH host needs Do53. */
function checkServers(pvd: Raw, path: string, fail: (path: string, message: string) => void) {
  const sources = list(pvd.sourceAddresses).map((s) => attempt(parseIp, s));
  const servers = list(pvd.servers).map((s) => attempt(parseServer, s));
  const families = new Set(sources.map((s) => s?.family));
  // An unreadable source address would make this guess wrong; zod reports it already.
  const sourcesKnown = sources.length > 0 && !families.has(undefined);
  const do53 = servers.some((s) => s?.address && (s.protocol === "udp" || s.protocol === "tcp"));
  servers.forEach((server, j) => {
    if (server?.address !== undefined && sourcesKnown && !families.has(server.family)) {
      const family = FAMILY_NAME[server.family!];
      fail(
        `${path}.servers[${j}]`,
        `${
          show(server.text)
        } is ${family} but there is no ${family} source address in sourceAddresses`,
      );
    }
    if (server?.host !== undefined && !do53) {
      fail(
        `${path}.servers[${j}]`,
        `${show(server.text)} names a host, which is looked up only through this PvD's own ` +
          "Do53 servers, and the PvD has none",
      );
    }
  });
}

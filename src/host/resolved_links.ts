/**
 * Per-link DNS configuration of the host, as systemd-resolved and NetworkManager hold it: which
 * servers, search domains and routing domains belong to which interface. Read-only: pvdns only runs
 * their query commands and changes nothing in either.
 *
 * Sources (each one absent, without an error, when its tool is not installed, its daemon is not
 * running, or its command fails in any way):
 * - **systemd-resolved**, through `resolvectl --no-pager dns` and `resolvectl --no-pager domain`
 *   (required), plus `default-route` and `dnsovertls` (optional: older versions lack them). The
 *   text output is parsed: `resolvectl status --json` does not exist in systemd 252 (Debian 12),
 *   and these one-line-per-link listings have kept their shape since systemd 239. Long lists are
 *   wrapped onto lines indented by 8 spaces; they are joined again.
 * - **NetworkManager**, through `nmcli -t -f GENERAL.DEVICE,IP4.DNS,IP6.DNS,IP4.DOMAIN,IP6.DOMAIN
 *   device show` (terse: `FIELD[N]:VALUE`, one block per device, `\:` and `\\` escaped).
 *
 * Both daemons describe the interfaces of the network namespace they run in (PID 1's), so the real
 * command runner ({@linkcode runHostCommand}) refuses to ask them when pvdns runs in another one;
 * their data would name interfaces that do not exist here, or other ones with the same index.
 *
 * What the data means for PvDs (default route, routing domains) is decided in
 * `src/host/default_config.ts`.
 *
 * @module
 */

/**
 * Runs a command (`command ARGS…`) and returns its standard output; throws when it cannot be
 * started (`Deno.errors.NotFound` when it is not installed) or exits with a non-zero status.
 */
export type CommandRunner = (command: string, args: string[]) => Promise<string>;

/** A DNS server as systemd-resolved or NetworkManager lists it, split into its parts (not validated). */
export interface HostServer {
  /** The IP address as written (no brackets, no zone). */
  readonly address: string;
  /** Port, when one is given (`192.0.2.1:5353`, `[2001:db8::1]:5353`). */
  readonly port?: number;
  /** IPv6 zone, when one is given (`fe80::1%3`: resolved writes interface indexes). */
  readonly zone?: string;
  /** Server name for DNS over TLS (`192.0.2.1#dns.example.net`). */
  readonly name?: string;
}

/** systemd-resolved's DNSOverTLS= mode. */
export type DnsOverTlsMode = "yes" | "no" | "opportunistic";

/** The DNS configuration of one interface (or resolved's global one). */
export interface LinkDns {
  /** Interface name; absent for systemd-resolved's global configuration. */
  readonly interface?: string;
  /** Interface index, as systemd-resolved reports it. */
  readonly ifindex?: number;
  /** Servers in the order listed. */
  readonly servers: readonly HostServer[];
  /** Search domains, as written (no trailing dot added). These route queries too. */
  readonly searchDomains: readonly string[];
  /** Routing-only domains (`~corp.example.com`) without the `~`; `~.` is `"."`. */
  readonly routingDomains: readonly string[];
  /** systemd-resolved's DefaultRoute in effect for the link, when `resolvectl` says. */
  readonly defaultRoute?: boolean;
  /** systemd-resolved's DNSOverTLS mode in effect, when `resolvectl` says. */
  readonly dnsOverTls?: DnsOverTlsMode;
}

/** The host's per-link DNS configuration, from one source. */
export interface HostLinks {
  /** Which daemon it came from. */
  readonly source: "systemd-resolved" | "NetworkManager";
  /** One entry per interface with at least one server, in the tool's order. */
  readonly links: readonly LinkDns[];
  /** systemd-resolved's global servers and domains (resolved.conf `DNS=`, `Domains=`), if any. */
  readonly global?: LinkDns;
}

/** One `Global: ITEMS…` or `Link N (NAME): ITEMS…` entry of a `resolvectl` listing. */
export interface ResolvectlEntry {
  /** Interface index; absent for the `Global` entry. */
  readonly ifindex?: number;
  /** Interface name; absent for the `Global` entry. */
  readonly interface?: string;
  /** The space-separated items after the colon, continuation lines included. */
  readonly items: readonly string[];
}

// deno-lint-ignore no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g;

/**
 * Parses a per-link listing of `resolvectl` (`dns`, `domain`, `default-route`, `dnsovertls`):
 * `Global: ITEMS…` and `Link N (NAME): ITEMS…` lines, each possibly continued on lines that start
 * with white space (resolvectl wraps at the terminal width). Other lines are ignored.
 *
 * @example
 * ```ts
 * parseResolvectlList("Global:\nLink 3 (wg0): 10.8.0.1\n");
 * // [{ items: [] }, { ifindex: 3, interface: "wg0", items: ["10.8.0.1"] }]
 * ```
 */
export function parseResolvectlList(text: string): ResolvectlEntry[] {
  const entries: { ifindex?: number; interface?: string; items: string[] }[] = [];
  let last: { items: string[] } | undefined;
  for (const raw of text.replace(ANSI, "").split("\n")) {
    const line = raw.trimEnd();
    if (line === "") continue;
    if (/^\s/.test(line)) {
      last?.items.push(...words(line));
      continue;
    }
    const global = /^Global:(.*)$/.exec(line);
    const link = global ? null : /^Link (\d+) \((.+)\):(.*)$/.exec(line);
    if (global) {
      last = { items: words(global[1]!) };
      entries.push(last);
    } else if (link) {
      last = { items: words(link[3]!) };
      entries.push({ ifindex: Number(link[1]), interface: link[2]!, ...last });
    } else {
      last = undefined;
    }
  }
  return entries;
}

/**
 * Splits one server as `resolvectl dns` prints it: `ADDR`, `ADDR:PORT`, `[V6]:PORT`, `V6%IFINDEX`,
 * `[V6]:PORT%IFINDEX`, each optionally followed by `#SERVER-NAME`.
 *
 * @returns The parts, or `undefined` when it is none of these shapes.
 */
export function parseResolvedServer(text: string): HostServer | undefined {
  const hash = text.indexOf("#");
  const name = hash >= 0 ? text.slice(hash + 1) : undefined;
  const rest = hash >= 0 ? text.slice(0, hash) : text;
  let address: string;
  let port: string | undefined;
  let zone: string | undefined;
  const bracketed = /^\[([^\]%]+)(?:%([^\]]+))?\](?::(\d+))?(?:%(.+))?$/.exec(rest);
  if (bracketed) {
    [address, zone, port] = [bracketed[1]!, bracketed[2] ?? bracketed[4], bracketed[3]];
  } else if (rest.split(":").length > 2) {
    const percent = rest.indexOf("%");
    [address, zone] = percent >= 0 ? [rest.slice(0, percent), rest.slice(percent + 1)] : [rest];
  } else {
    [address, port] = rest.split(":") as [string, string | undefined];
  }
  if (address === "" || /\s/.test(rest) || (port !== undefined && !/^\d{1,5}$/.test(port))) {
    return undefined;
  }
  return {
    address,
    ...(port !== undefined ? { port: Number(port) } : {}),
    ...(zone ? { zone } : {}),
    ...(name ? { name } : {}),
  };
}

/** The outputs of the `resolvectl` listings; `defaultRoute` and `dnsOverTls` may be missing. */
export interface ResolvectlOutputs {
  /** `resolvectl --no-pager dns` */
  readonly dns: string;
  /** `resolvectl --no-pager domain` */
  readonly domain: string;
  /** `resolvectl --no-pager default-route` (systemd ≥ 240) */
  readonly defaultRoute?: string;
  /** `resolvectl --no-pager dnsovertls` (systemd ≥ 243) */
  readonly dnsOverTls?: string;
}

/**
 * Combines the `resolvectl` listings into per-link DNS configuration. Links without servers are
 * left out; the `Global` entry is returned apart (absent when it has no servers). A link's
 * DNSOverTLS mode is its own when it has one, otherwise the global one, as in systemd-resolved.
 *
 * @example
 * ```ts
 * parseResolvectl({
 *   dns: "Global:\nLink 3 (wg0): 10.8.0.1\n",
 *   domain: "Global:\nLink 3 (wg0): ~corp.example.com\n",
 * }).links;
 * // [{ interface: "wg0", ifindex: 3, servers: [{ address: "10.8.0.1" }],
 * //    searchDomains: [], routingDomains: ["corp.example.com"] }]
 * ```
 */
export function parseResolvectl(
  outputs: ResolvectlOutputs,
): { links: LinkDns[]; global?: LinkDns } {
  const key = (e: ResolvectlEntry) => e.ifindex === undefined ? "global" : `${e.ifindex}`;
  const index = (text: string | undefined) =>
    new Map(parseResolvectlList(text ?? "").map((e) => [key(e), e.items]));
  const domains = index(outputs.domain);
  const defaultRoutes = index(outputs.defaultRoute);
  const tls = index(outputs.dnsOverTls);
  const globalTls = dnsOverTlsMode(tls.get("global")?.[0]);

  const links: LinkDns[] = [];
  let global: LinkDns | undefined;
  const entries = parseResolvectlList(outputs.dns);
  const names = new Map(entries.flatMap((e) => e.ifindex === undefined ? [] : [[e.ifindex, e]]));
  for (const entry of entries) {
    const servers = entry.items.flatMap((item) => {
      const server = parseResolvedServer(item);
      if (server === undefined) return [];
      // Only the global list carries zones, as interface indexes: name them when we can.
      const named = server.zone && /^\d+$/.test(server.zone)
        ? names.get(Number(server.zone))?.interface
        : undefined;
      return [named ? { ...server, zone: named } : server];
    });
    if (servers.length === 0) continue;
    const items = domains.get(key(entry)) ?? [];
    const route = defaultRoutes.get(key(entry))?.[0];
    const mode = dnsOverTlsMode(tls.get(key(entry))?.[0]) ?? globalTls;
    const link: LinkDns = {
      ...(entry.ifindex !== undefined
        ? { interface: entry.interface!, ifindex: entry.ifindex }
        : {}),
      servers,
      searchDomains: items.filter((d) => !d.startsWith("~")),
      routingDomains: items.filter((d) => d.startsWith("~")).map((d) => d.slice(1) || "."),
      ...(route === "yes" || route === "no" ? { defaultRoute: route === "yes" } : {}),
      ...(mode ? { dnsOverTls: mode } : {}),
    };
    if (entry.ifindex === undefined) global = link;
    else links.push(link);
  }
  return global ? { links, global } : { links };
}

function dnsOverTlsMode(text: string | undefined): DnsOverTlsMode | undefined {
  if (text === "yes" || text === "no" || text === "opportunistic") return text;
  // Older versions print booleans their own way ("1", "true"); "n/a" or nothing: unset.
  if (text === "1" || text === "true") return "yes";
  if (text === "0" || text === "false") return "no";
  return undefined;
}

/**
 * Parses `nmcli -t -f GENERAL.DEVICE,IP4.DNS,IP6.DNS,IP4.DOMAIN,IP6.DOMAIN device show`: one block
 * of `FIELD[N]:VALUE` lines per device, blocks separated by blank lines, with `:` and `\` in values
 * escaped as `\:` and `\\`. Domains starting with `~` are routing-only, as NetworkManager itself
 * writes them. Devices without servers are left out.
 *
 * @example
 * ```ts
 * parseNmcliDevices("GENERAL.DEVICE:wg0\nIP4.DNS[1]:10.8.0.1\nIP6.DNS[1]:fd00\\:8\\:\\:1\n");
 * // [{ interface: "wg0", servers: [{ address: "10.8.0.1" }, { address: "fd00:8::1" }],
 * //    searchDomains: [], routingDomains: [] }]
 * ```
 */
export function parseNmcliDevices(text: string): LinkDns[] {
  const links: LinkDns[] = [];
  let device: { name: string; servers: HostServer[]; domains: string[] } | undefined;
  const flush = () => {
    if (device && device.servers.length > 0) {
      const domains = [...new Set(device.domains)];
      links.push({
        interface: device.name,
        servers: device.servers,
        searchDomains: domains.filter((d) => !d.startsWith("~")),
        routingDomains: domains.filter((d) => d.startsWith("~")).map((d) => d.slice(1) || "."),
      });
    }
    device = undefined;
  };
  for (const raw of text.split("\n")) {
    const line = raw.trimEnd();
    const field = /^([A-Z0-9-]+\.[A-Z0-9-]+)(?:\[\d+\])?:(.*)$/.exec(line);
    if (!field) {
      if (line === "") flush();
      continue;
    }
    const [name, value] = [field[1]!, unescapeNmcli(field[2]!).trim()];
    if (name === "GENERAL.DEVICE") {
      flush();
      if (value !== "") device = { name: value, servers: [], domains: [] };
    } else if (!device || value === "" || value === "--") {
      continue;
    } else if (name === "IP4.DNS" || name === "IP6.DNS") {
      const percent = value.indexOf("%");
      device.servers.push(
        percent >= 0
          ? { address: value.slice(0, percent), zone: value.slice(percent + 1) }
          : { address: value },
      );
    } else if (name === "IP4.DOMAIN" || name === "IP6.DOMAIN") {
      device.domains.push(value);
    }
  }
  flush();
  return links;
}

function unescapeNmcli(value: string): string {
  return value.replace(/\\(.)/g, "$1");
}

function words(text: string): string[] {
  return text.trim().split(/\s+/).filter((w) => w !== "");
}

/**
 * Reads systemd-resolved's per-link configuration with `resolvectl`.
 *
 * @param run Runs a command; see {@linkcode CommandRunner}.
 * @returns Its links and global configuration, or `undefined` when `resolvectl` is missing or
 *   fails (systemd-resolved not running), or when no server is configured anywhere.
 */
export async function readResolvedLinks(run: CommandRunner): Promise<HostLinks | undefined> {
  const ask = (verb: string) => run("resolvectl", ["--no-pager", verb]).catch(() => undefined);
  const [dns, domain, defaultRoute, dnsOverTls] = await Promise.all(
    ["dns", "domain", "default-route", "dnsovertls"].map(ask),
  );
  if (dns === undefined || domain === undefined) return undefined;
  const { links, global } = parseResolvectl({ dns, domain, defaultRoute, dnsOverTls });
  if (links.length === 0 && global === undefined) return undefined;
  return { source: "systemd-resolved", links, ...(global ? { global } : {}) };
}

/**
 * Reads NetworkManager's per-device DNS configuration with `nmcli`.
 *
 * @param run Runs a command; see {@linkcode CommandRunner}.
 * @returns Its devices with servers, or `undefined` when `nmcli` is missing or fails
 *   (NetworkManager not running), or when no device has a server.
 */
export async function readNetworkManagerLinks(
  run: CommandRunner,
): Promise<HostLinks | undefined> {
  let text: string;
  try {
    text = await run("nmcli", [
      "-t",
      "-f",
      "GENERAL.DEVICE,IP4.DNS,IP6.DNS,IP4.DOMAIN,IP6.DOMAIN",
      "device",
      "show",
    ]);
  } catch {
    return undefined;
  }
  const links = parseNmcliDevices(text);
  return links.length === 0 ? undefined : { source: "NetworkManager", links };
}

/**
 * Whether this process shares PID 1's network namespace, where systemd-resolved and
 * NetworkManager live. When PID 1's namespace cannot be read (pvdns not root), assumes it does.
 *
 * @param readLink Reads a symbolic link. @default Deno.readLink
 */
export async function inInitNetworkNamespace(
  readLink: (path: string) => Promise<string> = Deno.readLink,
): Promise<boolean> {
  try {
    const [own, init] = await Promise.all([
      readLink("/proc/self/ns/net"),
      readLink("/proc/1/ns/net"),
    ]);
    return own === init;
  } catch (e) {
    // Without --allow-all Deno refuses /proc/*/ns: ask `ip netns identify` instead, which
    // prints the namespace's name inside a named one and nothing in the initial one.
    if (e instanceof Deno.errors.NotCapable) {
      try {
        const out = await new Deno.Command("ip", {
          args: ["netns", "identify"],
          stdin: "null",
          stdout: "piped",
          stderr: "null",
        }).output();
        if (out.success) return new TextDecoder().decode(out.stdout).trim() === "";
      } catch { /* no ip, or no permission to run it: cannot tell */ }
    }
    return true;
  }
}

/** How long a host tool may take before it is killed and its source counts as absent. */
export const HOST_COMMAND_TIMEOUT_MS = 5000;

/**
 * The real {@linkcode CommandRunner} for `resolvectl` and `nmcli`: no colours, no pager, no line
 * wrapping, C locale, killed after {@linkcode HOST_COMMAND_TIMEOUT_MS}. Refuses (throws) outside
 * PID 1's network namespace, see the module comment.
 */
export async function runHostCommand(command: string, args: string[]): Promise<string> {
  if (!(await inInitNetworkNamespace())) {
    throw new Error(`${command}: not asked: pvdns runs in another network namespace than PID 1`);
  }
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), HOST_COMMAND_TIMEOUT_MS);
  try {
    const output = await new Deno.Command(command, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: abort.signal,
      env: { LC_ALL: "C", SYSTEMD_COLORS: "0", SYSTEMD_PAGER: "", COLUMNS: "10000" },
    }).output();
    const decoder = new TextDecoder();
    if (!output.success) {
      const message = decoder.decode(output.stderr).trim() ||
        (output.signal ? `killed by ${output.signal}` : `exit code ${output.code}`);
      throw new Error(`${command} ${args.join(" ")}: ${message}`);
    }
    return decoder.decode(output.stdout);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The embedded default config, used when `pvdns serve` runs without `--config`: one implicit PvD
 * per network the host's resolver configuration names servers for. Read in this order, the first
 * that gives at least one usable PvD wins:
 *
 * 1. **systemd-resolved's per-link configuration** (`resolvectl`, see
 * `src/host/resolved_links.ts`): one PvD
 *    `implicit:IFACE` per link with servers, plus `implicit:global:IFACE` for resolved's global
 *    servers (resolved.conf `DNS=`), grouped by the interface `ip route get` reaches them through.
 * 2. **NetworkManager's per-device configuration** (`nmcli`): one PvD `implicit:IFACE` per device
 *    with servers.
 * 3. **`/etc/resolv.conf`**: servers grouped by the interface `ip route get` reaches them through.
 *    `/etc/resolv.conf` naming only `127.0.0.53` means systemd-resolved's stub; its upstreams are
 *    read from `/run/systemd/resolve/resolv.conf` instead.
 *
 * Choices (see also the README):
 * - pvdns only reads: it runs `resolvectl`/`nmcli` query commands and changes nothing in either
 *   daemon. A tool that is missing or fails (daemon not running) is simply skipped.
 * - Per link: the link's own servers (no `ip route get`); `searchDomains` are its search domains;
 *   `dnsZones` are its routing domains (`~corp.example.com` → `corp.example.com.`) **and** its
 *   search domains, because systemd-resolved (and NetworkManager, which feeds it) routes queries
 *   under a search domain to that link too; `~` only keeps a domain out of the search list. They
 *   are zones from the network: the router does not let them capture names from a `~.` link of
 *   higher priority, nor accept a public suffix (src/policy/zone_claims.ts).
 * - Default PvDs mirror systemd-resolved's DefaultRoute: a link is a default when resolved says
 *   DefaultRoute=yes (`resolvectl default-route`), or, when that is not known, when it has no
 *   routing-only domain or has `~.` (the root as routing domain: "send everything here"). So a VPN
 *   link with only `~corp.example.com` answers that zone and nothing else. resolved's global
 *   servers are always a default, as its global scope is.
 * - Priority (pvdns asks one default PvD, resolved asks all of them at once): 100 for the first
 *   default PvD with `~.`, else the first on the interface of the kernel's main default route
 *   (`ip route show default`, lowest metric, IPv4 first), else the first; the others 0 and stand
 *   in, in the tool's order (links before global servers).
 * - systemd-resolved with DNSOverTLS=yes in effect for a link: its servers become `tls://ADDR#NAME`
 *   (port 853 unless given); a server without a name is skipped, never downgraded to plain DNS.
 *   `opportunistic` and `no` give plain DNS (opportunistic allows it).
 * - A link whose interface does not exist (any more), or has another index than resolved says, is
 *   skipped; when no link is usable, the next source is read. Both daemons describe PID 1's
 *   network namespace: from another one (`ip netns exec`) they are not asked at all, when pvdns
 *   can tell (see `src/host/resolved_links.ts`).
 * - With resolv.conf: servers are grouped by the interface `ip route get` reaches them through, in
 *   resolv.conf order. Every such PvD is a default PvD; the first server's PvD has priority 100,
 *   the others 0, so the host's first choice wins and the others stand in when it disappears. The
 *   resolv.conf search domains go to the first server's PvD (resolv.conf does not say which
 *   network they came from).
 * - A server equal to one of pvdns's own listen addresses (and always `127.0.0.53`) is dropped so
 *   that pvdns never forwards to itself; so is a local address when pvdns listens on a wildcard.
 * - Source addresses are the interface's global addresses (host scope on loopback), the route's
 *   preferred source first. Prefixes are the networks of those addresses, except on loopback,
 *   whose PvD gets none: otherwise every local client would be routed to it by source address.
 * - A server whose family has no source address on its interface, or that has no route, is
 *   skipped; when none is left, a {@linkcode ConfigError} says why each was skipped.
 *
 * @module
 */
import { ConfigError, DEFAULT_LISTEN, validateConfig } from "../config/parse.ts";
import { parseListenAddress } from "../config/schema.ts";
import type { Config } from "../config/types.ts";
import { type IpRunner, runIp as runIpCommand } from "./ip_command.ts";
import { readNetworkManagerLinks, readResolvedLinks, runHostCommand } from "./resolved_links.ts";
import { pvdsFromLinks, validateLinkPvds } from "./link_pvds.ts";
import { pvdsFromResolvConf } from "./resolv_conf.ts";

/** What {@linkcode buildHostDefault} reads from the host; injectable for tests. */
export interface HostDeps {
  /** Reads a text file. @default Deno.readTextFile */
  readonly readFile?: (path: string) => Promise<string>;
  /**
   * Runs `ip -j ARGS…` (ARGS without `-j`, e.g. `["route", "get", "192.0.2.1"]`) and returns its
   * parsed JSON output; throws when `ip` fails. @default the `ip` command
   */
  readonly runIp?: IpRunner;
  /**
   * Runs `resolvectl` or `nmcli` (`command`, `args`) and returns its standard output; throws when
   * the command is missing or fails, which leaves that source out. @default the real commands,
   * asked only from PID 1's network namespace
   */
  readonly runCommand?: (command: string, args: string[]) => Promise<string>;
  /**
   * Where pvdns will listen (`ADDR:PORT`); they become the config's `listen`, and servers equal
   * to one of them are dropped. @default ["127.0.0.53:53"]
   */
  readonly listenAddresses?: readonly string[];
  /**
   * The config's `allow` list: needed when a listen address is not loopback (the host watch
   * passes the running config's listeners, already validated with their own allow list).
   */
  readonly allow?: readonly string[];
}

/**
 * Builds the embedded default config from the host: systemd-resolved's or NetworkManager's
 * per-link DNS configuration when present, else its resolv.conf; its routes and interface
 * addresses. Host discovery is on. The listen address is `127.0.0.53:53` unless
 * `deps.listenAddresses` says otherwise; falling back to an unprivileged port when that cannot be
 * bound is the caller's (main.ts's) business.
 *
 * @param deps Injected file reader, `ip` and command runners and listen addresses; see
 *   {@linkcode HostDeps}.
 * @returns A config validated like a config file, with PvD origin `"host"`.
 * @throws {ConfigError} When no source gives a usable server (resolv.conf unreadable, or every
 *   server skipped).
 *
 * @example
 * ```ts
 * const config = await buildHostDefault();
 * config.pvds[0]?.id; // e.g. "implicit:eth0"
 * ```
 */
export async function buildHostDefault(deps: HostDeps = {}): Promise<Config> {
  const readFile = deps.readFile ?? ((path: string) => Deno.readTextFile(path));
  const runIp = deps.runIp ?? runIpCommand;
  const runCommand = deps.runCommand ?? runHostCommand;
  const listen = deps.listenAddresses?.length ? [...deps.listenAddresses] : [DEFAULT_LISTEN];
  const own = listen.flatMap((text) => {
    try {
      return [parseListenAddress(text)];
    } catch {
      return []; // validateConfig reports it
    }
  });

  // Per-link sources first; each is read only when the one before gave nothing usable.
  const linkSkipped: string[] = [];
  for (const read of [readResolvedLinks, readNetworkManagerLinks]) {
    const host = await read(runCommand);
    if (host === undefined) continue;
    const pvds = await pvdsFromLinks(host, { runIp, own, skipped: linkSkipped });
    if (pvds.length > 0) return finish(listen, deps.allow, pvds);
  }

  return finish(
    listen,
    deps.allow,
    await pvdsFromResolvConf({ readFile, runIp, own, linkSkipped }),
  );
}

function finish(
  listen: string[],
  allow: readonly string[] | undefined,
  pvds: Record<string, unknown>[],
): Config {
  try {
    return validateLinkPvds(pvds, (records) => {
      const raw = { listen, discovery: { host: true }, pvds: records, ...(allow ? { allow } : {}) };
      return validateConfig(raw, { origin: "host" });
    });
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    throw new ConfigError(error.errors.map((e) => `embedded default config: ${e}`));
  }
}

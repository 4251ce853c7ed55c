/**
 * The two-namespace link the RA end-to-end tests run on:
 *
 * ```
 *  router ns  veth ─────────────── veth  host ns
 *   fe80::1            (RAs)            2001:db8:cafe::100/64 (HOST_ADDR, accept_ra=0)
 *   2001:db8:cafe::53  dnsmasq (the PvD's RDNSS; ID AAAA ::443, plus the test's records)
 *   2001:db8:cafe::443 HTTPS /.well-known/pvd (a test CA), the document in `docFile`
 * ```
 *
 * Everything it starts is stopped by {@linkcode RaTestbed.close}, in reverse order, with what the
 * test added through {@linkcode RaTestbed.defer}.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { type Dnsmasq, type DnsmasqRecord, startDnsmasq } from "./dnsmasq.ts";
import { type JsonLinesProcess, startJsonLines } from "./json_lines_process.ts";
import { createNetns, createVethPair, type Netns, type VethPair } from "./netns.ts";
import { pvdDocument } from "./ra_frames.ts";
import { makeTestCa, type TestCa } from "./test_ca.ts";

/** The PvD ID the testbed's document and DNS name. */
export const ID = "pvd.example.com";
/** The host's address in the PvD's prefix (added by the testbed: no SLAAC from a PvD option). */
export const HOST_ADDR = "2001:db8:cafe::100";
/** The deno.json of the repository (for child Deno processes). */
export const DENO_JSON = fileURLToPath(new URL("../deno.json", import.meta.url));

/** A script in testkit, as a path. */
export const support = (f: string) => fileURLToPath(new URL(`./${f}`, import.meta.url));

/** What {@linkcode startRaTestbed} is given. */
export interface RaTestbedOptions {
  /** Namespace name prefixes (short: interface names derive from them). */
  readonly prefixes: readonly [router: string, host: string];
  /** Addresses of the router's side besides fe80::1, ::53 and ::443. */
  readonly routerAddresses?: readonly string[];
  /** Zones and records of the RDNSS besides `ID AAAA 2001:db8:cafe::443`. */
  readonly zones: readonly string[];
  readonly records?: readonly DnsmasqRecord[];
  /** The first /.well-known/pvd document's prefixes and dnsZones. */
  readonly document: { readonly prefixes: string[]; readonly dnsZones: string[] };
}

/** The running testbed. */
export interface RaTestbed {
  readonly router: Netns;
  readonly host: Netns;
  /** `a` in the router, `b` in the host. */
  readonly veth: VethPair;
  readonly ca: TestCa;
  /** The file the HTTPS server serves as /.well-known/pvd (rewrite it to change the answer). */
  readonly docFile: string;
  readonly dns: Dnsmasq;
  /** The HTTPS server: one JSON line per request (`request.from`, …). */
  readonly https: JsonLinesProcess;
  /** Stops `stop` at close, before what the testbed started. */
  defer(stop: () => Promise<unknown>): void;
  /** Stops everything, the test's own first. */
  close(): Promise<void>;
}

/** Builds the link, the RDNSS and the HTTPS server. */
export async function startRaTestbed(o: RaTestbedOptions): Promise<RaTestbed> {
  const router = await createNetns({ prefix: o.prefixes[0] });
  const host = await createNetns({ prefix: o.prefixes[1] });
  const cleanups: (() => Promise<unknown>)[] = [() => host.delete(), () => router.delete()];
  const close = async () => {
    for (const c of cleanups.reverse()) await c().catch(() => {});
    cleanups.length = 0;
  };
  try {
    const veth = await createVethPair(
      {
        netns: router.name,
        addresses: [
          "fe80::1/64",
          ...(o.routerAddresses ?? []),
          "2001:db8:cafe::53/64",
          "2001:db8:cafe::443/64",
        ],
      },
      { netns: host.name, addresses: [`${HOST_ADDR}/64`] },
    );
    cleanups.push(() => veth.delete());
    // The kernel learns nothing from the RAs; pvdns learns everything from its own raw socket.
    await host.exec(["sysctl", "-qw", `net.ipv6.conf.${veth.b}.accept_ra=0`]);
    const ca = await makeTestCa([ID]);
    cleanups.push(() => ca.remove());
    const docFile = `${ca.dir}/pvd.json`;
    await Deno.writeTextFile(
      docFile,
      pvdDocument(ID, o.document.prefixes, o.document.dnsZones),
    );
    const dns = await startDnsmasq({
      address: "2001:db8:cafe::53",
      netns: router.name,
      zones: [...o.zones],
      records: [{ name: ID, type: "AAAA", value: "2001:db8:cafe::443" }, ...(o.records ?? [])],
    });
    cleanups.push(() => dns.stop());
    const https = startJsonLines([
      Deno.execPath(),
      "run",
      "-A",
      "--config",
      DENO_JSON,
      support("pvd_https_server.ts"),
      "--address",
      "2001:db8:cafe::443",
      "--cert",
      ca.certFile,
      "--key",
      ca.keyFile,
      "--doc",
      docFile,
    ], router.name); // deno-fmt-ignore
    cleanups.push(() => https.stop());
    await https.waitFor((l) => "listening" in l, { what: "the HTTPS server" });
    return {
      router,
      host,
      veth,
      ca,
      docFile,
      dns,
      https,
      defer: (stop) => void cleanups.push(stop),
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}

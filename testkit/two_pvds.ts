/**
 * Two PvDs with real dnsmasq upstreams on loopback, and a third whose server never answers:
 * the fixture of the library, control API and CLI tests.
 *
 * - `home.example.net`: default (priority 100), zone `home.test`, source addresses `homeSrc`
 *   and `::1`; records: www (A 192.0.2.1, AAAA 2001:db8:1::1), TXT, MX, SRV, a CNAME alias.
 * - `vpn.example.com`: zone `corp.test`, one IPv4 source address; www.corp.test A 10.8.1.20 and
 *   AAAA 2001:db8:8::20 (so a lookup there has no IPv6 source for the AAAA).
 * - `dead.example.org`: zone `dead.test`, its one server a UDP socket that reads and never answers.
 *
 * @module
 */

import { startDnsmasq } from "./dnsmasq.ts";
import { loopbackAddress } from "./loopback.ts";

/** The running fixture. */
export interface TwoPvds {
  readonly homeSrv: string;
  readonly vpnSrv: string;
  readonly homeSrc: string;
  readonly vpnSrc: string;
  /** A free loopback address with port 53 free, for a DNS listener. */
  readonly listen: string;
  /** The config object (pass to validateConfig or write as a file); `extra` adds keys. */
  config(
    extra?: Record<string, unknown>,
    options?: { withoutVpn?: boolean },
  ): Record<string, unknown>;
  stop(): Promise<void>;
}

/** Starts both dnsmasq upstreams and the silent server. */
export async function startTwoPvds(): Promise<TwoPvds> {
  const [homeSrv, vpnSrv, deadSrv, listen] = [
    loopbackAddress(),
    loopbackAddress(),
    loopbackAddress(),
    loopbackAddress(),
  ];
  const [homeSrc, vpnSrc, deadSrc] = [
    loopbackAddress({ port: 0 }),
    loopbackAddress({ port: 0 }),
    loopbackAddress({ port: 0 }),
  ];
  const home = await startDnsmasq({
    address: homeSrv,
    zones: ["home.test"],
    records: [
      { name: "www.home.test", type: "A", value: "192.0.2.1" },
      { name: "www.home.test", type: "AAAA", value: "2001:db8:1::1" },
      { name: "home.test", type: "TXT", value: ["v=spf1 -all"] },
    ],
    extraArgs: [
      "--mx-host=home.test,mail.home.test,10",
      "--srv-host=_imap._tcp.home.test,mail.home.test,143,0,5",
      "--cname=alias.home.test,www.home.test",
    ],
  });
  const vpn = await startDnsmasq({
    address: vpnSrv,
    zones: ["corp.test"],
    records: [
      { name: "www.corp.test", type: "A", value: "10.8.1.20" },
      { name: "www.corp.test", type: "AAAA", value: "2001:db8:8::20" },
    ],
  }).catch(async (e) => {
    await home.stop();
    throw e;
  });
  const hole = Deno.listenDatagram({ hostname: deadSrv, port: 53, transport: "udp" });
  const holeLoop = (async () => {
    try {
      for (let i = 0; i < 100_000; i++) await hole.receive();
    } catch { /* closed */ }
  })();
  return {
    homeSrv,
    vpnSrv,
    homeSrc,
    vpnSrc,
    listen,
    config: (extra = {}, options = {}) => ({
      listen: [`${listen}:53`],
      upstream: { timeoutMs: 1000, deadlineMs: 1500 },
      pvds: [
        {
          id: "home.example.net",
          sourceAddresses: [homeSrc, "::1"],
          servers: [homeSrv],
          dnsZones: ["home.test"],
          searchDomains: ["home.test"],
          default: true,
          priority: 100,
        },
        ...(options.withoutVpn ? [] : [{
          id: "vpn.example.com",
          interface: "lo",
          prefixes: ["10.8.0.0/16"],
          sourceAddresses: [vpnSrc],
          servers: [vpnSrv, `tcp://${vpnSrv}`],
          dnsZones: ["corp.test"],
        }]),
        {
          id: "dead.example.org",
          sourceAddresses: [deadSrc],
          servers: [deadSrv],
          dnsZones: ["dead.test"],
        },
      ],
      ...extra,
    }),
    async stop() {
      hole.close();
      await holeLoop;
      await vpn.stop();
      await home.stop();
    },
  };
}

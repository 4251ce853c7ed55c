/**
 * A Do53 upstream (UDP and TCP on `address:53`) whose answers a test scripts per name: the A
 * records to give and whether to set AD, as a forging or misconfigured network resolver would.
 * Real sockets; it records every question it was asked.
 *
 * @module
 */

import * as packet from "dns-packet";
import { Buffer } from "node:buffer";
import { startStreamServer } from "./fake_servers.ts";

/** What the upstream answers for one name. */
export interface ScriptedAnswer {
  /** IPv4 addresses (A), or IPv6 ones (AAAA) for AAAA questions. */
  readonly addresses: readonly string[];
  /** Set the AD bit. @default false */
  readonly ad?: boolean;
}

/** A running scripted upstream. */
export interface ScriptedUpstream {
  readonly address: string;
  /** Names asked (lower case, no trailing dot), in order, over either wire. */
  readonly asked: readonly string[];
  close(): Promise<void>;
}

/** Starts it; `script(name)` says what to answer (NXDOMAIN when it returns undefined). */
export function startScriptedUpstream(
  address: string,
  script: (name: string) => ScriptedAnswer | undefined,
): ScriptedUpstream {
  const asked: string[] = [];
  const answer = (query: Uint8Array): Uint8Array => {
    const q = packet.decode(Buffer.from(query));
    const question = q.questions![0]!;
    const name = question.name.toLowerCase();
    asked.push(name);
    const scripted = script(name);
    const flags = packet.RECURSION_DESIRED | packet.RECURSION_AVAILABLE |
      (scripted?.ad ? packet.AUTHENTIC_DATA : 0);
    const answers = (scripted?.addresses ?? [])
      .filter((a) => a.includes(":") === (question.type === "AAAA"))
      .map((data) => ({ type: question.type as "A", name: question.name, ttl: 300, data }));
    return new Uint8Array(packet.encode({
      type: "response",
      id: q.id,
      flags: flags | (scripted ? 0 : 3), // rcode 3: NXDOMAIN
      questions: [question],
      answers,
    }));
  };
  const udp = Deno.listenDatagram({ hostname: address, port: 53, transport: "udp" });
  const loop = (async () => {
    try {
      for (;;) {
        const [data, from] = await udp.receive();
        try {
          await udp.send(answer(data), from);
        } catch { /* not a query */ }
      }
    } catch { /* closed */ }
  })();
  const tcp = startStreamServer({ address, port: 53, answer });
  return {
    address,
    asked,
    async close() {
      udp.close();
      await loop;
      await tcp.close();
    },
  };
}

/**
 * RFC 6724 address selection with a PvD's source addresses: cases modelled on the examples of
 * RFC 6724 §10.2 (source addresses given per PvD instead of per host).
 *
 * @module
 */

import assert from "node:assert/strict";
import { selectSource, sortDestinations } from "../../src/client/address_selection.ts";

const order = (dests: string[], sources: string[]) =>
  sortDestinations(dests.map((address) => ({ address })), () => sources).map((d) =>
    `${d.address} src ${d.source ?? "none"}`
  );

Deno.test("sortDestinations() follows RFC 6724 §6 with one PvD's source addresses", async (t) => {
  const cases: [string, string[], string[], string[]][] = [
    [
      "rule 2: prefer matching scope",
      ["2001:db8:1::1", "198.51.100.121"],
      ["2001:db8:1::2", "fe80::1", "169.254.13.78"],
      ["2001:db8:1::1 src 2001:db8:1::2", "198.51.100.121 src 169.254.13.78"],
    ],
    [
      "rule 2: prefer matching scope (IPv4 wins)",
      ["2001:db8:1::1", "198.51.100.121"],
      ["fe80::1", "198.51.100.117"],
      ["198.51.100.121 src 198.51.100.117", "2001:db8:1::1 src fe80::1"],
    ],
    [
      "rule 6: prefer higher precedence",
      ["10.1.2.3", "2001:db8:1::1"],
      ["2001:db8:1::2", "fe80::1", "10.1.2.4"],
      ["2001:db8:1::1 src 2001:db8:1::2", "10.1.2.3 src 10.1.2.4"],
    ],
    [
      "rule 8: prefer smaller scope",
      ["2001:db8:1::1", "fe80::1"],
      ["2001:db8:1::2", "fe80::2"],
      ["fe80::1 src fe80::2", "2001:db8:1::1 src 2001:db8:1::2"],
    ],
    [
      "rule 5: prefer matching label (6to4)",
      ["2001:db8:1::1", "2002:c633:6401::1"],
      ["2002:c633:6401::2", "fe80::2"],
      ["2002:c633:6401::1 src 2002:c633:6401::2", "2001:db8:1::1 src 2002:c633:6401::2"],
    ],
    [
      "rule 9: longest matching prefix",
      ["2001:db8:3ffe::1", "2001:db8:1::1"],
      ["2001:db8:1::2", "fe80::2"],
      ["2001:db8:1::1 src 2001:db8:1::2", "2001:db8:3ffe::1 src 2001:db8:1::2"],
    ],
    [
      "rule 1: a family the PvD has no source address for comes last",
      ["2001:db8:8::20", "10.8.1.20"],
      ["10.8.0.2"],
      ["10.8.1.20 src 10.8.0.2", "2001:db8:8::20 src none"],
    ],
    [
      "rule 10: otherwise the DNS order stays",
      ["192.0.2.7", "192.0.2.3"],
      ["192.0.2.10"],
      ["192.0.2.7 src 192.0.2.10", "192.0.2.3 src 192.0.2.10"],
    ],
  ];
  for (const [name, dests, sources, want] of cases) {
    await t.step(name, () => assert.deepEqual(order(dests, sources), want));
  }
});

Deno.test("selectSource() follows RFC 6724 §5 among the PvD's addresses", () => {
  assert.equal(
    selectSource("2001:db8:1::1", ["fe80::1", "2001:db8:1::2", "192.0.2.10"]),
    "2001:db8:1::2",
  );
  assert.equal(selectSource("fe80::9", ["2001:db8:1::2", "fe80::1"]), "fe80::1");
  assert.equal(selectSource("192.0.2.99", ["192.0.2.10", "192.0.2.99"]), "192.0.2.99");
  assert.equal(selectSource("10.1.2.3", ["10.9.0.1", "10.1.2.4"]), "10.1.2.4");
  assert.equal(selectSource("2001:db8::1", ["192.0.2.10"]), undefined);
});

import assert from "node:assert/strict";
import { validateConfig } from "../../src/config/parse.ts";
import { createStub } from "../../src/service/stub.ts";
import { dig } from "../../testkit/dig.ts";
import { startDnsmasq } from "../../testkit/dnsmasq.ts";
import { loopbackAddress } from "../../testkit/loopback.ts";

Deno.test("Stub.reload(): a vanished PvD's in-flight queries get SERVFAIL, never another PvD", async () => {
  const silent = loopbackAddress();
  const otherSrv = loopbackAddress();
  const [src1, src2, listen] = [
    loopbackAddress({ port: 0 }),
    loopbackAddress({ port: 0 }),
    loopbackAddress(),
  ];
  const hole = Deno.listenDatagram({ hostname: silent, port: 53, transport: "udp" });
  let seen = 0;
  const loop = (async () => {
    try {
      for (;;) {
        await hole.receive();
        seen++;
      }
    } catch { /* closed */ }
  })();
  const other = await startDnsmasq({
    address: otherSrv,
    zones: ["gone.test"],
    records: [{ name: "www.gone.test", type: "A", value: "192.0.2.1" }],
  });
  const raw = (withVpn: boolean) => ({
    listen: [`${listen}:53`],
    pvds: [
      { id: "home.example", sourceAddresses: [src1], servers: [otherSrv], default: true },
      ...(withVpn
        ? [{
          id: "vpn.example",
          sourceAddresses: [src2],
          servers: [silent],
          dnsZones: ["gone.test"],
        }]
        : []),
    ],
    upstream: { timeoutMs: 3000, deadlineMs: 4000 },
  });
  const stub = await createStub(validateConfig(raw(true)), { log: () => {} });
  try {
    const pending = dig({ server: listen, name: "www.gone.test", timeSeconds: 5 });
    for (let i = 0; i < 50 && seen === 0; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(seen, 1, "the query is in flight at the vpn server");
    const r = await stub.reload(validateConfig(raw(false)));
    assert.deepEqual(r.removed, ["vpn.example"]);
    assert.deepEqual(r.changed, []);
    const answer = await pending;
    assert.equal(answer.status, "SERVFAIL");
    assert.deepEqual(await other.queryLog(), [], "home was not asked the vanished PvD's question");
    const after = await dig({ server: listen, name: "www.gone.test" });
    assert.deepEqual(
      after.answers.map((a) => a.data),
      ["192.0.2.1"],
      "new queries route by the new config",
    );
  } finally {
    await stub.close();
    hole.close();
    await loop;
    await other.stop();
  }
});

Deno.test("Stub.reload(): a listener that cannot be bound refuses the whole reload", async () => {
  const srv = loopbackAddress();
  const [src, listen] = [loopbackAddress({ port: 0 }), loopbackAddress()];
  const up = await startDnsmasq({
    address: srv,
    zones: ["k.test"],
    records: [{ name: "a.k.test", type: "A", value: "192.0.2.7" }],
  });
  const base = { pvds: [{ id: "home.example", sourceAddresses: [src], servers: [srv] }] };
  const stub = await createStub(validateConfig({ ...base, listen: [`${listen}:53`] }), {
    log: () => {},
  });
  try {
    await assert.rejects(
      stub.reload(
        validateConfig({
          ...base,
          listen: [`${listen}:53`, "192.0.2.200:53"],
          allow: ["127.0.0.0/8"],
        }),
      ),
    );
    assert.deepEqual(stub.listening, [`${listen}:53`]);
    assert.deepEqual((await dig({ server: listen, name: "a.k.test" })).answers.map((a) => a.data), [
      "192.0.2.7",
    ]);
  } finally {
    await stub.close();
    await up.stop();
  }
});

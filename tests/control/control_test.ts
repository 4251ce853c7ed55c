/**
 * The control API against a stub with two dnsmasq PvDs, over its Unix socket (curl
 * `--unix-socket`) and over loopback TCP (token required), plus the plain metrics listener.
 * The DoH endpoint is driven by two real clients: curl sending RFC 8484 GET `?dns=` and POST
 * `application/dns-message`, and dnspython's `dns.query.https` (httpx) in both modes.
 *
 * @module
 */

import assert from "node:assert/strict";
import * as packet from "dns-packet";
import { Buffer } from "node:buffer";
import { validateConfig } from "../../src/config/parse.ts";
import { type HttpListener, startControl, startMetrics } from "../../src/control/control.ts";
import { createStub } from "../../src/service/stub.ts";
import { exec, execOk } from "../../testkit/exec.ts";
import { PYTHON } from "../../testkit/dnspython.ts";
import { loopbackAddress } from "../../testkit/loopback.ts";
import { startTwoPvds } from "../../testkit/two_pvds.ts";

interface CurlResult {
  status: number;
  headers: Record<string, string>;
  body: Uint8Array;
  text: string;
}

/** Runs curl; `target` is the control URL (`unix:/…` or `http://…`). */
async function curl(target: string, path: string, args: string[] = []): Promise<CurlResult> {
  const dir = await Deno.makeTempDir({ prefix: "pvdns-curl-" });
  try {
    const base = target.startsWith("unix:")
      ? ["--unix-socket", target.slice(5), `http://localhost${path}`]
      : [`${target}${path}`];
    const r = await exec([
      "curl",
      "-sS",
      "--max-time",
      "10",
      "-D",
      `${dir}/headers`,
      "-o",
      `${dir}/body`,
      ...args,
      ...base,
    ]);
    assert.equal(r.code, 0, `curl failed: ${r.stderr}`);
    const lines = (await Deno.readTextFile(`${dir}/headers`)).split("\r\n");
    const status = Number(lines[0]!.split(" ")[1]);
    const headers: Record<string, string> = {};
    for (const l of lines.slice(1)) {
      const i = l.indexOf(":");
      if (i > 0) headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
    }
    const body = await Deno.readFile(`${dir}/body`).catch(() => new Uint8Array());
    return { status, headers, body, text: new TextDecoder().decode(body) };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function query(name: string, type: packet.RecordType = "A"): Uint8Array {
  return new Uint8Array(packet.encode({
    type: "query",
    id: 0, // RFC 8484 §4.1: DoH clients use ID 0
    flags: packet.RECURSION_DESIRED,
    questions: [{ type, name, class: "IN" }],
  }));
}

const decode = (b: Uint8Array) =>
  packet.decode(Buffer.from(b)) as unknown as {
    id: number;
    rcode: string;
    answers: { type: string; data: unknown }[];
  };
const base64url = (b: Uint8Array) =>
  btoa(String.fromCharCode(...b)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");

function assertProblem(r: CurlResult, status: number, kind: string, detail: RegExp) {
  assert.equal(r.status, status, r.text);
  assert.equal(r.headers["content-type"], "application/problem+json");
  const p = JSON.parse(r.text);
  assert.equal(p.status, status);
  assert.equal(p.type, `urn:pvdns:problem:${kind}`);
  assert.equal(typeof p.title, "string");
  assert.match(p.detail, detail);
  return p;
}

Deno.test("control API: Unix socket and loopback with a token; PvDs, resolve, DoH, flush, reload, health, metrics", async (t) => {
  const f = await startTwoPvds();
  const stub = await createStub(validateConfig(f.config()), { log: () => {}, version: "9.9.9" });
  const dir = await Deno.makeTempDir({ prefix: "pvdns-control-" });
  const tcpAddress = loopbackAddress({ port: 0 });
  let reloads = 0;
  const listeners: HttpListener[] = [];
  try {
    const unix = await startControl(stub, {
      listen: `unix:${dir}/pvdns.sock`,
      version: "9.9.9",
      reload: () => {
        reloads++;
        return Promise.resolve(
          reloads === 1
            ? {
              ok: true,
              result: {
                added: [],
                changed: ["home.example.net"],
                removed: [],
                listenersAdded: [],
                listenersRemoved: [],
              },
            }
            : { ok: false, errors: ['pvds[0].servers[0]: "300.1.1.1" is not an IP address'] },
        );
      },
    });
    listeners.push(unix);
    const tcp = await startControl(stub, { listen: `${tcpAddress}:0`, token: "s3cret" });
    listeners.push(tcp);
    const metrics = await startMetrics(stub.registry, `${tcpAddress}:0`);
    listeners.push(metrics);
    const auth = ["-H", "Authorization: Bearer s3cret"];

    await t.step("the Unix socket is mode 0660", async () => {
      const st = await Deno.stat(`${dir}/pvdns.sock`);
      assert.equal(st.mode! & 0o777, 0o660);
    });

    await t.step(
      "loopback TCP: 401 without the token or with a wrong one, 200 with it",
      async () => {
        const none = await curl(tcp.url, "/v1/pvds");
        assertProblem(none, 401, "unauthorized", /Authorization: Bearer header is missing/);
        assert.equal(none.headers["www-authenticate"], 'Bearer realm="pvdns"');
        const wrong = await curl(tcp.url, "/v1/pvds", ["-H", "Authorization: Bearer nope"]);
        assertProblem(wrong, 401, "unauthorized", /not the one in control.token/);
        assertProblem(await curl(tcp.url, "/dns-query?dns=AAAA"), 401, "unauthorized", /missing/);
        const ok = await curl(tcp.url, "/v1/pvds", auth);
        assert.equal(ok.status, 200);
        assert.equal(JSON.parse(ok.text).pvds.length, 3);
        // The Unix socket needs no token: its file mode decides.
        assert.equal((await curl(unix.url, "/v1/pvds")).status, 200);
      },
    );

    for (
      const [label, target, extra] of [["unix", unix.url, []], ["tcp", tcp.url, auth]] as const
    ) {
      const get = (path: string, args: string[] = []) => curl(target, path, [...extra, ...args]);

      await t.step(`${label}: GET /v1/pvds and /v1/pvds/{id}`, async () => {
        const all = JSON.parse((await get("/v1/pvds")).text);
        assert.deepEqual(all.pvds.map((p: { id: string }) => p.id), [
          "home.example.net",
          "vpn.example.com",
          "dead.example.org",
        ]);
        const one = await get("/v1/pvds/VPN.example.com.");
        assert.equal(one.status, 200);
        const vpn = JSON.parse(one.text);
        assert.equal(vpn.origin, "config");
        assert.deepEqual(vpn.sourceAddresses, [f.vpnSrc]);
        assert.deepEqual(vpn.servers, [f.vpnSrv, `tcp://${f.vpnSrv}`]);
        assertProblem(await get("/v1/pvds/nope.example"), 404, "unknown-pvd", /"nope.example"/);
      });

      await t.step(`${label}: GET /v1/resolve answers in dns-json shape with the PvD`, async () => {
        const r = await get("/v1/resolve?name=www.corp.test&type=A&pvd=vpn.example.com");
        assert.equal(r.status, 200, r.text);
        assert.equal(r.headers["content-type"], "application/dns-json");
        const j = JSON.parse(r.text);
        assert.equal(j.Status, 0);
        assert.equal(j.TC, false);
        assert.equal(j.RD, true);
        assert.equal(typeof j.RA, "boolean");
        assert.equal(typeof j.AD, "boolean");
        assert.equal(j.CD, false);
        assert.deepEqual(j.Question, [{ name: "www.corp.test.", type: 1 }]);
        assert.deepEqual(
          j.Answer.map((
            a: { name: string; type: number; data: string },
          ) => [a.name, a.type, a.data]),
          [[
            "www.corp.test.",
            1,
            "10.8.1.20",
          ]],
        );
        assert.ok(j.Answer[0].TTL > 0);
        assert.equal(j.pvd, "vpn.example.com");
        assert.ok(["upstream", "cache"].includes(j.source));
        const mx = JSON.parse((await get("/v1/resolve?name=home.test&type=mx")).text);
        assert.equal(mx.pvd, "home.example.net");
        assert.equal(mx.Answer[0].data, "10 mail.home.test.");
        const txt = JSON.parse((await get("/v1/resolve?name=home.test&type=TXT")).text);
        assert.equal(txt.Answer[0].data, '"v=spf1 -all"');
        const nx = JSON.parse((await get("/v1/resolve?name=nope.home.test")).text);
        assert.equal(nx.Status, 3);
        assert.equal(nx.Authority[0].type, 6); // the zone's SOA (RFC 2308)
        const local = JSON.parse((await get("/v1/resolve?name=localhost")).text);
        assert.equal(local.pvd, null);
        assert.equal(local.source, "policy");
      });

      await t.step(
        `${label}: problem JSON for a bad name, a bad type, an unknown PvD`,
        async () => {
          assertProblem(
            await get("/v1/resolve?name=a..b"),
            400,
            "bad-name",
            /"a\.\.b" is not a valid domain name/,
          );
          assertProblem(await get("/v1/resolve?type=A"), 400, "bad-name", /name: .*missing/);
          assertProblem(
            await get(`/v1/resolve?name=${"x".repeat(64)}.test`),
            400,
            "bad-name",
            /longer than 63/,
          );
          assertProblem(
            await get("/v1/resolve?name=www.home.test&type=BOGUS"),
            400,
            "bad-type",
            /"BOGUS"/,
          );
          assertProblem(
            await get("/v1/resolve?name=www.home.test&type=AXFR"),
            400,
            "bad-type",
            /"AXFR"/,
          );
          assertProblem(
            await get("/v1/resolve?name=www.home.test&pvd=nope.example"),
            404,
            "unknown-pvd",
            /"nope.example" is not a known PvD/,
          );
          assertProblem(await get("/v2/nothing"), 404, "not-found", /\/v2\/nothing/);
          const wrongMethod = await get("/v1/reload");
          assertProblem(wrongMethod, 405, "method-not-allowed", /GET \/v1\/reload: use POST/);
          assert.equal(wrongMethod.headers["allow"], "POST");
        },
      );

      await t.step(
        `${label}: DoH with curl: GET ?dns= and POST application/dns-message, per PvD`,
        async () => {
          const q = query("www.home.test");
          const g = await get(`/dns-query?pvd=home.example.net&dns=${base64url(q)}`, [
            "-H",
            "Accept: application/dns-message",
          ]);
          assert.equal(g.status, 200, g.text);
          assert.equal(g.headers["content-type"], "application/dns-message");
          assert.equal(g.headers["pvdns-pvd"], "home.example.net");
          assert.match(g.headers["cache-control"]!, /^max-age=\d+$/);
          const ga = decode(g.body);
          assert.equal(ga.id, 0);
          assert.deepEqual(ga.answers.map((a) => a.data), ["192.0.2.1"]);

          const body = `${dir}/q-${label}.bin`;
          await Deno.writeFile(body, query("www.corp.test", "AAAA"));
          const p = await get("/dns-query?pvd=vpn.example.com", [
            "-H",
            "Content-Type: application/dns-message",
            "--data-binary",
            `@${body}`,
          ]);
          assert.equal(p.status, 200, p.text);
          assert.equal(p.headers["pvdns-pvd"], "vpn.example.com");
          assert.deepEqual(decode(p.body).answers.map((a) => a.data), ["2001:db8:8::20"]);
          // The home PvD's server knows nothing of corp.test: asked there, the answer is SERVFAIL.
          const inHome = await get("/dns-query?pvd=home.example.net", [
            "-H",
            "Content-Type: application/dns-message",
            "--data-binary",
            `@${body}`,
          ]);
          assert.equal(decode(inHome.body).rcode, "SERVFAIL");
          assertProblem(
            await get(`/dns-query?pvd=nope.example&dns=${base64url(q)}`),
            404,
            "unknown-pvd",
            /nope/,
          );
          assertProblem(
            await get("/dns-query"),
            400,
            "bad-request",
            /dns: the query parameter is missing/,
          );
          assertProblem(await get("/dns-query?dns=%25%25"), 400, "bad-request", /not base64url/);
          assertProblem(
            await get("/dns-query", ["-H", "Content-Type: text/plain", "--data-binary", "hello"]),
            415,
            "unsupported-media-type",
            /"text\/plain"/,
          );
        },
      );

      await t.step(`${label}: POST /v1/cache/flush empties one PvD's cache or all`, async () => {
        await get("/v1/resolve?name=www.home.test");
        const one = JSON.parse(
          (await get("/v1/cache/flush?pvd=home.example.net", ["-X", "POST"])).text,
        );
        assert.equal(one.pvd, "home.example.net");
        assert.ok(one.flushed >= 1);
        const again = JSON.parse((await get("/v1/resolve?name=www.home.test")).text);
        assert.equal(again.source, "upstream");
        const all = JSON.parse((await get("/v1/cache/flush", ["-X", "POST"])).text);
        assert.equal(all.pvd, null);
        assertProblem(
          await get("/v1/cache/flush?pvd=nope", ["-X", "POST"]),
          404,
          "unknown-pvd",
          /nope/,
        );
      });

      await t.step(`${label}: GET /healthz and GET /metrics`, async () => {
        const h = JSON.parse((await get("/healthz")).text);
        assert.deepEqual(h, {
          status: "ok",
          version: label === "unix" ? "9.9.9" : "dev",
          pvds: 3,
          listening: stub.listening,
        });
        const m = await get("/metrics");
        assert.match(m.headers["content-type"]!, /^text\/plain/);
        assert.match(m.text, /pvdns_dns_requests_total\{proto="api",type="A"\} \d+/);
      });
    }

    await t.step(
      "DoH with dnspython's dns.query.https over loopback with the token, POST and GET",
      async () => {
        const script = `
import json, sys, dns.message, dns.query, httpx
q = dns.message.make_query("www.corp.test", "A")
out = []
with httpx.Client(headers={"Authorization": "Bearer s3cret"}) as s:
    for post in (True, False):
        r = dns.query.https(q, sys.argv[1], session=s, post=post, timeout=5)
        out.append({"post": post, "rcode": r.rcode(), "answer": [str(rr) for rrset in r.answer for rr in rrset]})
print(json.dumps(out))
`;
        const out = await execOk(
          [PYTHON, "-c", script, `${tcp.url}/dns-query?pvd=vpn.example.com`],
          {
            timeoutMs: 20_000,
          },
        );
        assert.deepEqual(JSON.parse(out), [
          { post: true, rcode: 0, answer: ["10.8.1.20"] },
          { post: false, rcode: 0, answer: ["10.8.1.20"] },
        ]);
      },
    );

    await t.step(
      "POST /v1/reload reports the changes, or the errors of a refused file",
      async () => {
        const ok = await curl(unix.url, "/v1/reload", ["-X", "POST"]);
        assert.equal(ok.status, 200, ok.text);
        assert.deepEqual(JSON.parse(ok.text).changed, ["home.example.net"]);
        const refused = assertProblem(
          await curl(unix.url, "/v1/reload", ["-X", "POST"]),
          422,
          "reload-refused",
          /300\.1\.1\.1/,
        );
        assert.deepEqual(refused.errors, ['pvds[0].servers[0]: "300.1.1.1" is not an IP address']);
        // The TCP listener was started without a config file to reload.
        assertProblem(
          await curl(tcp.url, "/v1/reload", ["-X", "POST", ...auth]),
          409,
          "no-config-file",
          /--config/,
        );
      },
    );

    await t.step(
      "the metrics listener serves /metrics without a token, and nothing else",
      async () => {
        const m = await curl(metrics.url, "/metrics");
        assert.equal(m.status, 200);
        assert.match(m.text, /^# HELP pvdns_/m);
        assert.equal((await curl(metrics.url, "/v1/pvds")).status, 404);
        const file = `${dir}/metrics.txt`;
        await Deno.writeTextFile(file, m.text);
        const lint = await exec(["bash", "-c", `promtool check metrics < ${file}`]);
        assert.equal(lint.code, 0, `promtool check metrics:\n${lint.stdout}${lint.stderr}`);
      },
    );

    await t.step(
      "a second control API on a live socket is refused; TCP needs loopback and a token",
      async () => {
        await assert.rejects(
          startControl(stub, { listen: unix.url }),
          /another process already serves/,
        );
        await assert.rejects(
          startControl(stub, { listen: "192.0.2.1:5380", token: "x" }),
          /loopback/,
        );
        await assert.rejects(startControl(stub, { listen: `${tcpAddress}:0` }), /token/);
      },
    );
  } finally {
    for (const l of listeners) await l.close();
    await stub.close();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    await f.stop();
  }
});

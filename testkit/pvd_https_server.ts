/**
 * A tiny HTTPS server for `/.well-known/pvd`, run by the end-to-end test inside the "router"
 * namespace:
 *
 * ```sh
 * ip netns exec ROUTER deno run -A pvd_https_server.ts --address A --port P --cert C --key K --doc F
 * ```
 *
 * It answers `GET /.well-known/pvd` with the current contents of file F (re-read per request,
 * so the test can change the document) as `application/pvd+json`, 404 elsewhere, and prints one
 * JSON line per request: `{"request": {"from", "path", "host", "accept", "userAgent"}}`, after a
 * first `{"listening": "ADDR:PORT"}`.
 *
 * @module
 */

import { parseArgs } from "node:util";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    address: { type: "string" },
    port: { type: "string", default: "443" },
    cert: { type: "string" },
    key: { type: "string" },
    doc: { type: "string" },
  },
});
const { address, cert, key, doc } = values;
if (!address || !cert || !key || !doc) {
  console.error("usage: pvd_https_server.ts --address A [--port P] --cert C --key K --doc F");
  Deno.exit(2);
}
const print = (o: unknown) => console.log(JSON.stringify(o));
const server = Deno.serve({
  hostname: address,
  port: Number(values.port),
  cert: Deno.readTextFileSync(cert),
  key: Deno.readTextFileSync(key),
  onListen: (a) => print({ listening: `[${a.hostname}]:${a.port}` }),
}, async (req, info) => {
  const url = new URL(req.url);
  print({
    request: {
      from: (info.remoteAddr as Deno.NetAddr).hostname,
      path: url.pathname,
      host: req.headers.get("host"),
      accept: req.headers.get("accept"),
      userAgent: req.headers.get("user-agent"),
    },
  });
  if (url.pathname !== "/.well-known/pvd") return new Response("not found", { status: 404 });
  return new Response(await Deno.readTextFile(doc), {
    headers: { "content-type": "application/pvd+json" },
  });
});
Deno.addSignalListener("SIGTERM", async () => {
  await server.shutdown();
  Deno.exit(0);
});

/**
 * A throwaway certificate authority made with openssl: one CA and one server certificate for a
 * list of DNS names, in a fresh temp directory. Nothing is installed in any trust store; tests
 * hand `caFile` to the code under test.
 *
 * @module
 */

import { execOk } from "./exec.ts";

/** The files and PEM texts of {@linkcode makeTestCa}. */
export interface TestCa {
  readonly dir: string;
  /** CA certificate (PEM file path and text). */
  readonly caFile: string;
  readonly caPem: string;
  /** Server certificate and key (PEM texts and paths), valid for `names`. */
  readonly certFile: string;
  readonly keyFile: string;
  readonly certPem: string;
  readonly keyPem: string;
  /** Deletes the directory. */
  remove(): Promise<void>;
}

/** Makes a P-256 CA and a server certificate for `names` (subjectAltName DNS entries). */
export async function makeTestCa(names: readonly string[]): Promise<TestCa> {
  const dir = await Deno.makeTempDir({ prefix: "pvdns-ca-" });
  await Deno.chmod(dir, 0o755);
  const p = (f: string) => `${dir}/${f}`;
  try {
    const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    await execOk([
      "openssl",
      "req",
      "-x509",
      ...ec,
      "-keyout",
      p("ca.key"),
      "-out",
      p("ca.pem"),
      "-days",
      "2",
      "-subj",
      "/CN=pvdns test CA",
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign",
    ]); // deno-fmt-ignore
    await execOk([
      "openssl", "req", ...ec, "-keyout", p("server.key"), "-out", p("server.csr"),
      "-subj", `/CN=${names[0]}`,
    ]); // deno-fmt-ignore
    await Deno.writeTextFile(
      p("ext.cnf"),
      `subjectAltName=${names.map((n) => `DNS:${n}`).join(",")}\n` +
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    );
    await execOk([
      "openssl",
      "x509",
      "-req",
      "-in",
      p("server.csr"),
      "-CA",
      p("ca.pem"),
      "-CAkey",
      p("ca.key"),
      "-CAcreateserial",
      "-out",
      p("server.pem"),
      "-days",
      "2",
      "-extfile",
      p("ext.cnf"),
    ]); // deno-fmt-ignore
    for (const f of ["ca.pem", "server.pem", "server.key"]) await Deno.chmod(p(f), 0o644);
    return {
      dir,
      caFile: p("ca.pem"),
      caPem: await Deno.readTextFile(p("ca.pem")),
      certFile: p("server.pem"),
      keyFile: p("server.key"),
      certPem: await Deno.readTextFile(p("server.pem")),
      keyPem: await Deno.readTextFile(p("server.key")),
      remove: () => Deno.remove(dir, { recursive: true }).catch(() => {}),
    };
  } catch (e) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw e;
  }
}

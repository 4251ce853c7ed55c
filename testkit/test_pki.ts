/**
 * A throw-away PKI for DoT/DoH tests, made with `openssl` (P-256 keys, so it takes well under a
 * second): a test CA, and server certificates for one authentication name in four flavours —
 * good, expired (valid only in January 2020), for a wrong name, and signed by another CA that
 * nobody trusts. Each certificate is written with its chain-less PEM and shares one key.
 *
 * @module
 */

import { execOk } from "./exec.ts";

/** One server certificate and its key, as files and as PEM text. */
export interface TestCert {
  readonly certFile: string;
  readonly keyFile: string;
  readonly cert: string;
  readonly key: string;
}

/** What {@linkcode makeTestPki} made. */
export interface TestPki {
  readonly dir: string;
  /** The name the good certificate carries (DNS subjectAltName). */
  readonly authName: string;
  /** The trusted test CA certificate. */
  readonly caFile: string;
  readonly caPem: string;
  /** Valid now, for `authName`, signed by the test CA. */
  readonly good: TestCert;
  /** For `authName`, signed by the test CA, expired in 2020. */
  readonly expired: TestCert;
  /** Valid now, signed by the test CA, but for `wrong.<authName>` only. */
  readonly wrongName: TestCert;
  /** Valid now, for `authName`, signed by a CA nobody trusts. */
  readonly unknownCa: TestCert;
  /** Deletes the files. */
  remove(): Promise<void>;
}

/** `YYYYMMDDHHMMSSZ` for openssl's -startdate/-enddate. */
function asn1Time(date: Date): string {
  return date.toISOString().replace(/[-:T]/g, "").slice(0, 14) + "Z";
}

/**
 * Makes the CA and the four server certificates for `authName` in a new temp directory.
 *
 * @example
 * const pki = await makeTestPki("dns.test.example");
 * try { ... pki.good.certFile ... pki.caFile ... } finally { await pki.remove(); }
 */
export async function makeTestPki(authName = "dns.test.example"): Promise<TestPki> {
  const dir = await Deno.makeTempDir({ prefix: "pvdns-pki-" });
  await Deno.chmod(dir, 0o755);
  /** Runs openssl in `dir`; `command` is split on spaces, `extra` is passed as is. */
  const run = (command: string, ...extra: string[]) =>
    execOk(["openssl", ...command.split(" "), ...extra], { cwd: dir, timeoutMs: 20_000 });
  const ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
  const caExt = "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign";
  await run(`req -x509 ${ec} -keyout ca.key -out ca.pem -days 3 ${caExt}`, "-subj", "/CN=test CA");
  await run(
    `req -x509 ${ec} -keyout other.key -out other.pem -days 3 ${caExt}`,
    "-subj",
    "/CN=other",
  );
  await run(`req ${ec} -keyout server.key -out server.csr`, "-subj", `/CN=${authName}`);
  await run("req -new -key server.key -out wrong.csr", "-subj", `/CN=wrong.${authName}`);
  await Deno.writeTextFile(`${dir}/index.txt`, "");
  await Deno.writeTextFile(`${dir}/serial`, "1000\n");
  const ext = (name: string) =>
    `[${name}]\nsubjectAltName = DNS:${name === "wrong" ? "wrong." : ""}${authName}\n` +
    "basicConstraints = CA:FALSE\nextendedKeyUsage = serverAuth\n";
  await Deno.writeTextFile(
    `${dir}/ca.cnf`,
    `[ca]\ndefault_ca = test\n[test]\ndatabase = ${dir}/index.txt\nserial = ${dir}/serial\n` +
      `new_certs_dir = ${dir}\ndefault_md = sha256\npolicy = any\nunique_subject = no\n` +
      `[any]\ncommonName = supplied\n${ext("right")}${ext("wrong")}`,
  );
  const sign = (out: string, ca: string, csr: string, ext: string, from: Date, to: Date) =>
    run(
      `ca -batch -notext -config ca.cnf -cert ${ca}.pem -keyfile ${ca}.key -in ${csr} -out ${out}`,
      "-extensions",
      ext,
      "-startdate",
      asn1Time(from),
      "-enddate",
      asn1Time(to),
    );
  const now = Date.now();
  const [yesterday, inTwoDays] = [new Date(now - 86_400_000), new Date(now + 2 * 86_400_000)];
  const [jan1, jan2] = [new Date("2020-01-01T00:00:00Z"), new Date("2020-01-02T00:00:00Z")];
  await sign("good.pem", "ca", "server.csr", "right", yesterday, inTwoDays);
  await sign("expired.pem", "ca", "server.csr", "right", jan1, jan2);
  await sign("wrong-name.pem", "ca", "wrong.csr", "wrong", yesterday, inTwoDays);
  await sign("unknown-ca.pem", "other", "server.csr", "right", yesterday, inTwoDays);
  const key = await Deno.readTextFile(`${dir}/server.key`);
  const cert = async (file: string): Promise<TestCert> => ({
    certFile: `${dir}/${file}`,
    keyFile: `${dir}/server.key`,
    cert: await Deno.readTextFile(`${dir}/${file}`),
    key,
  });
  return {
    dir,
    authName,
    caFile: `${dir}/ca.pem`,
    caPem: await Deno.readTextFile(`${dir}/ca.pem`),
    good: await cert("good.pem"),
    expired: await cert("expired.pem"),
    wrongName: await cert("wrong-name.pem"),
    unknownCa: await cert("unknown-ca.pem"),
    remove: () => Deno.remove(dir, { recursive: true }).catch(() => {}),
  };
}

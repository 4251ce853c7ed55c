/**
 * Trust anchors of the encrypted transports: the system's roots (the host's CA store, as Deno
 * reads it; the runtime's bundled Mozilla roots when the host has none) plus the extra CA
 * certificates a PvD or the whole config names in `caFile`.
 *
 * @module
 */

import tls from "node:tls";

let systemRoots: readonly string[] | undefined;

function roots(): readonly string[] {
  if (systemRoots) return systemRoots;
  const get = (tls as { getCACertificates?: (kind: string) => string[] }).getCACertificates;
  let found: string[] = [];
  try {
    found = get?.("system") ?? [];
  } catch { /* not available in this runtime */ }
  systemRoots = Object.freeze(found.length ? found : [...tls.rootCertificates]);
  return systemRoots;
}

/**
 * The CA certificates a DoT or DoH connection trusts: the system's roots, then `extra` (PEM
 * texts, each possibly holding several certificates).
 */
export function trustAnchors(extra: readonly string[] = []): string[] {
  return [...roots(), ...extra];
}

/** Reads PEM files for `ca`: the PvD's `caFile`, then the top-level one. */
export function readCaFiles(paths: readonly (string | undefined)[]): string[] {
  const out: string[] = [];
  for (const path of paths) {
    if (path === undefined) continue;
    const text = Deno.readTextFileSync(path);
    if (!text.includes("-----BEGIN CERTIFICATE-----")) {
      throw new TypeError(`CA file ${path} holds no PEM certificate`);
    }
    out.push(text);
  }
  return out;
}

/**
 * pvdns: a PvD-aware DNS stub resolver. Each network the host is attached to is a provisioning
 * domain (PvD, RFC 7556) with its own DNS servers and zones; pvdns sends every query to the
 * servers of the one PvD that owns it, caches answers per PvD, and never lets a query or an
 * answer cross from one network into another.
 *
 * @example Run a stub inside a Deno program
 * ```ts ignore
 * import { createStub, parseConfig } from "./mod.ts";
 *
 * const stub = await createStub(parseConfig(`{
 *   "listen": ["127.0.0.54:53"],
 *   "pvds": [{ "id": "home.example.net", "sourceAddresses": ["192.0.2.10"], "servers": ["192.0.2.1"] }]
 * }`));
 * console.log(stub.listening); // ["127.0.0.54:53"]
 * await stub.close();
 * ```
 *
 * @module
 */

export * from "./resolver/config_types.ts";
export { ConfigError, loadConfigFile, parseConfig, validateConfig } from "./resolver/config.ts";
export { buildHostDefault, type HostDeps } from "./resolver/host_default.ts";
export { createStub, type HandleOptions, type Stub, type StubOptions } from "./resolver/stub.ts";
export { type Route, type RouteInput, Router, type RouteStep } from "./policy/router.ts";
export { type ExplainInput, explainRoute } from "./policy/explain.ts";
export { checkRoutes, type RouteCheck } from "./policy/route_check.ts";
export { LeakBlockedError, LeakGuard } from "./policy/leak_guard.ts";

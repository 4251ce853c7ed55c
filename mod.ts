/**
 * pvdns: a PvD-aware DNS stub resolver. Each network the host is attached to is a provisioning
 * domain (PvD, RFC 7556) with its own DNS servers and zones; pvdns sends every query to the
 * servers of the one PvD that owns it, caches answers per PvD, and never lets a query or an
 * answer cross from one network into another.
 *
 * Applications resolve *in a PvD* with {@linkcode PvdResolver} (shaped like Node's
 * `dns.promises.Resolver`), over a stub in the same process or, with {@linkcode connect}, over
 * the control API of a running daemon; `lookup()` also says which source address to bind.
 *
 * @example Resolve in one PvD and bind that PvD's source address
 * ```ts ignore
 * import { connect } from "./mod.ts";
 *
 * const pvdns = connect("unix:/run/pvdns.sock");
 * const best = await pvdns.lookup("git.corp.example.com", { pvd: "vpn.example.com" });
 * console.log(best); // { address: "10.8.1.20", family: 4, source: "10.8.0.2", pvd: "vpn.example.com" }
 * for await (const change of pvdns.watchPvds()) console.log(change.type, change.pvd.id);
 * ```
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
export {
  PvdResolver,
  type PvdResolverOptions,
  type ResolveAddressOptions,
} from "./client/resolver.ts";
export {
  type Exchange,
  type ExchangeOptions,
  type PvdBackend,
  stubBackend,
} from "./client/backend.ts";
export type { ResolveOptions } from "./client/query.ts";
export type { LookupAddress, LookupOptions } from "./client/lookup.ts";
export type { WatchOptions } from "./client/watch.ts";
export type {
  Answered,
  MxRecord,
  PvdRecords,
  RecordTypes,
  RecordWithTtl,
  SoaRecord,
  SrvRecord,
} from "./client/records.ts";
export {
  connect,
  type ConnectOptions,
  ControlClient,
  DEFAULT_CONTROL,
  type Health,
  type ReloadReport,
} from "./client/remote.ts";
export {
  ControlError,
  DnsError,
  type DnsErrorCode,
  type DnsErrorInit,
  type Problem,
} from "./client/errors.ts";
export {
  type SelectedAddress,
  selectSource,
  sortDestinations,
} from "./client/address_selection.ts";
export type {
  PvdAdditionalInfoJson,
  PvdChange,
  PvdInfo,
  PvdZoneJson,
} from "./resolver/pvd_info.ts";
export type { DnsJson, DnsJsonRecord } from "./resolver/dns_json.ts";
export {
  type ControlOptions,
  type HttpLimits,
  type HttpListener,
  type MetricsListenerOptions,
  type MetricsSource,
  type ReloadOutcome,
  startControl,
  startMetrics,
} from "./resolver/control.ts";
export type { Answer, AnswerSource, ClientInfo } from "./resolver/pipeline.ts";
export type { CloseOptions, ReloadResult } from "./resolver/stub.ts";
export type { PvdChanges } from "./resolver/pvd_set.ts";
export type { PvdEvent } from "./pvd/registry.ts";
export type { IpRunner } from "./pvd/ip_command.ts";
export type { GuardedPvd } from "./policy/leak_guard.ts";
export type { ParseConfigOptions } from "./resolver/config.ts";
export type { Query } from "./resolver/wire.ts";
export type { StoredResponse } from "./resolver/response.ts";

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

export * from "./src/config/types.ts";
export { ConfigError, loadConfigFile, parseConfig, validateConfig } from "./src/config/parse.ts";
export { createStub, type HandleOptions, type Stub, type StubOptions } from "./src/service/stub.ts";
export {
  PvdResolver,
  type PvdResolverOptions,
  type ResolveAddressOptions,
} from "./src/client/resolver.ts";
export {
  type Exchange,
  type ExchangeOptions,
  type PvdBackend,
  stubBackend,
} from "./src/client/backend.ts";
export type { ResolveOptions } from "./src/client/query.ts";
export type { LookupAddress, LookupOptions } from "./src/client/lookup.ts";
export type { WatchOptions } from "./src/client/watch.ts";
export type {
  Answered,
  MxRecord,
  PvdRecords,
  RecordTypes,
  RecordWithTtl,
  SoaRecord,
  SrvRecord,
} from "./src/client/records.ts";
export {
  connect,
  type ConnectOptions,
  ControlClient,
  DEFAULT_CONTROL,
  type Health,
  type ReloadReport,
} from "./src/client/remote.ts";
export {
  ControlError,
  DnsError,
  type DnsErrorCode,
  type DnsErrorInit,
  type Problem,
} from "./src/client/errors.ts";
export {
  type SelectedAddress,
  selectSource,
  sortDestinations,
} from "./src/client/address_selection.ts";
export type { PvdAdditionalInfoJson, PvdChange, PvdInfo, PvdZoneJson } from "./src/pvd/pvd_info.ts";
export type { DnsJson, DnsJsonRecord } from "./src/dns/json.ts";
export type { Answer } from "./src/service/pipeline.ts";
export type { AnswerSource, StoredResponse, TtlRules } from "./src/dns/response.ts";
export type { ClientInfo } from "./src/listen/listener.ts";
export type { CloseOptions, ReloadResult } from "./src/service/stub.ts";
export type { PvdChanges } from "./src/service/pvd_set.ts";
export type { PvdEvent } from "./src/pvd/registry.ts";
export type { IpRunner } from "./src/host/ip_command.ts";
export type { ParseConfigOptions } from "./src/config/parse.ts";
export type { Query } from "./src/dns/wire.ts";
export type { GuardedPvd, LeakGuard } from "./src/policy/leak_guard.ts";

/**
 * The errors of the library: {@linkcode DnsError} for a name that could not be resolved (Node's
 * `dns` error codes), {@linkcode ControlError} for a control API call that failed.
 *
 * @module
 */

/**
 * Why a resolution failed, with Node's `dns` codes:
 *
 * - `ENOTFOUND`: the name does not exist (NXDOMAIN);
 * - `ENODATA`: the name exists but has no record of that type (NODATA);
 * - `ESERVFAIL`: the PvD's servers failed (SERVFAIL);
 * - `EREFUSED`: refused, e.g. an unknown PvD, or no default PvD for the name (REFUSED);
 * - `ETIMEOUT`: no answer within the resolver's `timeout`;
 * - `ECANCELLED`: the caller's `signal` aborted, or `cancel()` was called;
 * - `EBADNAME`: the name cannot be asked about;
 * - `EFORMERR`, `ENOTIMP`, `EBADRESP`: the query or the reply was malformed or unsupported;
 * - `ECONNREFUSED`: the daemon could not be reached (remote resolver only).
 */
export type DnsErrorCode =
  | "ENOTFOUND"
  | "ENODATA"
  | "ESERVFAIL"
  | "EREFUSED"
  | "ETIMEOUT"
  | "ECANCELLED"
  | "EBADNAME"
  | "EFORMERR"
  | "ENOTIMP"
  | "EBADRESP"
  | "ECONNREFUSED";

/** What a {@linkcode DnsError} is about. */
export interface DnsErrorInit {
  /** The name asked about. */
  readonly hostname: string;
  /** Node's `syscall` field: `queryA`, `queryTxt`, `getaddrinfo`, `getHostByAddr` … */
  readonly syscall: string;
  /** The PvD that answered, or the one asked for. */
  readonly pvd?: string | undefined;
  /** More detail for the message. */
  readonly detail?: string | undefined;
  /** The underlying error. */
  readonly cause?: unknown;
}

/**
 * A failed resolution, shaped like the errors of Node's `dns.promises`: `code`, `hostname`,
 * `syscall`; plus the PvD.
 *
 * @example Telling "no such name" from "no such record"
 * ```ts ignore
 * try {
 *   await resolver.resolve6("www.example.org", { pvd: "home.example.net" });
 * } catch (e) {
 *   if (e instanceof DnsError && e.code === "ENODATA") console.log("no IPv6 address");
 *   else throw e;
 * }
 * ```
 */
export class DnsError extends Error {
  /** Node's `dns` error code. */
  readonly code: DnsErrorCode;
  /** The name asked about. */
  readonly hostname: string;
  /** Node's `syscall` field, e.g. `queryA`. */
  readonly syscall: string;
  /** The PvD that answered, or the one asked for. */
  readonly pvd: string | undefined;

  /** Makes the error; the message reads like Node's: `queryA ENOTFOUND www.example.org`. */
  constructor(code: DnsErrorCode, init: DnsErrorInit) {
    super(
      `${init.syscall} ${code} ${init.hostname}${init.pvd ? ` (PvD ${init.pvd})` : ""}${
        init.detail ? `: ${init.detail}` : ""
      }`,
      init.cause === undefined ? undefined : { cause: init.cause },
    );
    this.name = "DnsError";
    this.code = code;
    this.hostname = init.hostname;
    this.syscall = init.syscall;
    this.pvd = init.pvd;
  }
}

/** The `application/problem+json` body of a control API error (RFC 9457). */
export interface Problem {
  /** A URI naming the kind of problem, e.g. `urn:pvdns:problem:unknown-pvd`. */
  readonly type: string;
  /** Short summary of that kind of problem. */
  readonly title: string;
  /** The HTTP status. */
  readonly status: number;
  /** What went wrong this time, naming the bad value. */
  readonly detail: string;
  /** For a refused reload: every configuration error. */
  readonly errors?: readonly string[];
}

/**
 * A control API call that failed: the daemon answered with an error (`status`, `problem`), or it
 * could not be reached at all (`status` 0, `cause` says why).
 *
 * @example Telling "not running" from other failures
 * ```ts ignore
 * try {
 *   await (await connect("unix:/run/pvdns.sock")).listPvds();
 * } catch (e) {
 *   if (e instanceof ControlError && e.status === 0) console.error("pvdns is not running");
 * }
 * ```
 */
export class ControlError extends Error {
  /** HTTP status; 0 when no answer came. */
  readonly status: number;
  /** The problem document, when the daemon sent one. */
  readonly problem: Problem | undefined;

  /** Makes the error. */
  constructor(message: string, status: number, problem?: Problem, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = "ControlError";
    this.status = status;
    this.problem = problem;
  }
}

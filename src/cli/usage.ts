/**
 * The usage text of the `pvdns` command line, printed by `--help` and after a usage error.
 *
 * @module
 */
import { DEFAULT_CONTROL } from "../client/remote.ts";

/** `pvdns --help`. */
export const USAGE = `usage: pvdns <command> [options]

commands:
  serve [--config FILE] [--udp-listener auto|mmsg|deno] [--drain-ms MS]
                          answer DNS on the configured listeners (default: built from this host);
                          mmsg = batched recvmmsg/sendmmsg through FFI, deno = Deno.listenDatagram;
                          on SIGTERM/SIGINT queries in flight get MS to be answered (default 2000)
  route NAME [TYPE] [--from ADDR] [--listener ADDR] [--pvd ID] [--config FILE] [--daemon]
                          explain which PvD answers NAME, by which step and rule, via which servers,
                          and which zone claims were refused; --daemon: with the PvDs in force in
                          the running daemon (discovered ones too; rules from --config when given)
  doctor [--config FILE]  check that each PvD's servers are reached through the PvD's own interface
  check --config FILE     validate a config file; print the normalised result as JSON
  --version               print the version

asking the running daemon (control API: --control URL or PVDNS_CONTROL, default
${DEFAULT_CONTROL}; --token TOKEN or PVDNS_TOKEN for a TCP control listener):
  pvds [--json]           the PvDs in force
  query NAME [TYPE] [--pvd ID] [--json]
                          resolve through the daemon: answer, PvD, source, time
  flush [--pvd ID]        empty the cache of one PvD, or of all
  reload                  read the config file again
  stats                   queries, answers and cache use per PvD

Exit status 2 means a usage or configuration error; nothing was started. 3 means the daemon
could not be reached.`;

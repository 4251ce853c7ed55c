/**
 * Hands out distinct IPv4 loopback addresses, so that every server a test starts can use the
 * real DNS port 53 on an address of its own.
 *
 * Linux routes all of 127.0.0.0/8 to `lo`, so any 127.x.y.z can be bound without configuring
 * it. Addresses come from `127.A.B.C` with `A = 64 + pid % 128` (never 127.0.x.x: that keeps
 * clear of 127.0.0.1, systemd-resolved's 127.0.0.53/54 and whatever the host runs), and `B.C`
 * counting up within this process. Each candidate is probed by binding UDP and TCP on the port
 * (53 unless told otherwise) and skipped if either is taken, which also steps over addresses
 * left behind by a crashed run or used by a concurrent test process whose pid collides.
 *
 * @module
 */

let counter = 0;
const firstOctet = 64 + (Deno.pid % 128);

/** Options of {@linkcode loopbackAddress}. */
export interface LoopbackOptions {
  /** Port that must be free for UDP and TCP on the address; 0 skips the probe. @default 53 */
  port?: number;
}

/** The next candidate address of this process, without probing. */
function nextCandidate(): string {
  for (;;) {
    counter++;
    const b = (counter >> 8) & 0xff;
    const c = counter & 0xff;
    if (c === 0 || c === 255) continue;
    return `127.${firstOctet}.${b}.${c}`;
  }
}

/** True when UDP and TCP `port` can both be bound on `address` right now. */
function portFree(address: string, port: number): boolean {
  let udp: Deno.DatagramConn | undefined;
  let tcp: Deno.Listener | undefined;
  try {
    udp = Deno.listenDatagram({ transport: "udp", hostname: address, port });
    tcp = Deno.listen({ transport: "tcp", hostname: address, port });
    return true;
  } catch (e) {
    // Not root: binding port 53 is not allowed at all; the address is still unused by us.
    if (e instanceof Deno.errors.PermissionDenied) return true;
    return false;
  } finally {
    udp?.close();
    tcp?.close();
  }
}

/**
 * A loopback address no other caller of this function in this process got, with UDP and TCP
 * `port` free on it.
 *
 * @example
 * const upstream = loopbackAddress(); // e.g. "127.101.0.1"
 */
export function loopbackAddress(options: LoopbackOptions = {}): string {
  const port = options.port ?? 53;
  for (let tries = 0; tries < 1000; tries++) {
    const address = nextCandidate();
    if (port === 0 || portFree(address, port)) return address;
  }
  throw new Error(`loopbackAddress: no free 127.${firstOctet}.x.y with port ${port} free`);
}

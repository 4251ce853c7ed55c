/**
 * Runs iproute2's `ip -j …` and parses its JSON: how pvdns reads routes and addresses from the
 * kernel (Deno has no netlink API). Read-only: pvdns never changes the host's routing.
 *
 * @module
 */

/** Runs `ip -j ARGS…` and returns the parsed JSON; injectable wherever it is used. */
export type IpRunner = (args: string[]) => Promise<unknown>;

/**
 * The real `ip` command.
 *
 * @throws {Error} naming the command and its stderr when `ip` fails
 */
export async function runIp(args: string[]): Promise<unknown> {
  const output = await new Deno.Command("ip", {
    args: ["-j", ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  if (!output.success) {
    const message = decoder.decode(output.stderr).trim() || `exit code ${output.code}`;
    throw new Error(`ip -j ${args.join(" ")}: ${message}`);
  }
  const text = decoder.decode(output.stdout).trim();
  return text === "" ? [] : JSON.parse(text);
}

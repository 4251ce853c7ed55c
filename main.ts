/**
 * The `pvdns` executable: `deno task start` and the packaged unit run this file. The command
 * line itself lives in `src/cli/main.ts`.
 *
 * @module
 */
import { main } from "./src/cli/main.ts";

if (import.meta.main) Deno.exit(await main(Deno.args));

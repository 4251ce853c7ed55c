/**
 * The error of a config that cannot be used (`parse.ts`, `text.ts`), and its lines for a report.
 *
 * @module
 */

/** A config that cannot be used. `errors` holds one `PATH: MESSAGE` line per problem. */
export class ConfigError extends Error {
  /** Every problem found: first those of single values, then those relating parts of the file. */
  readonly errors: readonly string[];

  /**
   * Makes the error from its lines.
   *
   * @param errors One line per problem; the message is all of them joined by newlines.
   */
  constructor(errors: readonly string[]) {
    super(errors.join("\n"));
    this.name = "ConfigError";
    this.errors = Object.freeze([...errors]);
  }
}

/**
 * The lines that say why a config was refused: a {@linkcode ConfigError}'s own, else the
 * error's message. Any error counts: a config must never end in a stack trace.
 */
export function refusalLines(e: unknown): readonly string[] {
  return e instanceof ConfigError ? e.errors : [`${(e as Error)?.message ?? String(e)}`];
}

/**
 * The error of a config that cannot be used (`config.ts`, `config_text.ts`).
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

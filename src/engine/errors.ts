// An error that names the command-line flag whose value could not be used: the CLI prints it in one line
// and exits 2, whether it arose in this process or in the engine a VM was handed to.

/** A flag's value that cannot be used, and why. */
export class UsageError extends Error {
  constructor(
    readonly flag: string,
    /** What is wrong, without the flag. */
    readonly detail: string,
  ) {
    super(`${flag}: ${detail}`);
  }
}

/** softnet cannot become root (sudo would not run it); the message is the line to print. */
export class NotPrivileged extends Error {}

/** Runs a set-up step, turning its failure into a UsageError for `flag`. */
export function flagged<T>(flag: string, step: () => T): T {
  try {
    return step();
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(flag, e instanceof Error ? e.message : String(e));
  }
}

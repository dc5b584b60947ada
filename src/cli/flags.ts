// Command-line flags: `--flag value` and `--flag=value`, boolean flags, aliases, and a UsageError naming
// the flag for every mistake. Each command says which flags it takes.

import { UsageError } from '../engine/errors.js';

/** What a command takes. */
export interface FlagSet {
  values: ReadonlySet<string>;
  bools?: ReadonlySet<string>;
  /** Other spellings: alias -> flag. */
  aliases?: Readonly<Record<string, string>>;
  /** How many bare words (positional arguments) it takes before or between flags. */
  words?: number;
}

/** What was given: values by flag, how each was spelled, and the bare words. */
export interface Given {
  values: Map<string, string>;
  spelled: Map<string, string>;
  words: string[];
}

/** Parses `argv` against `set`; throws UsageError for an unknown flag, a missing value or a repeat. */
export function parseFlags(argv: string[], set: FlagSet): Given {
  const out: Given = { values: new Map(), spelled: new Map(), words: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const eq = arg.indexOf('=');
    const raw = arg.startsWith('--') && eq > 0 ? arg.slice(0, eq) : arg;
    if (set.bools?.has(arg)) {
      if (out.values.has(arg)) throw new UsageError(arg, 'given twice');
      out.values.set(arg, '');
      continue;
    }
    if (!set.values.has(raw) && !(set.aliases && raw in set.aliases)) {
      if (!arg.startsWith('-') && out.words.length < (set.words ?? 0)) {
        out.words.push(arg);
        continue;
      }
      throw new UsageError(raw, arg.startsWith('-') ? 'unknown flag' : 'unexpected argument');
    }
    const flag = set.aliases?.[raw] ?? raw;
    let value: string;
    if (raw !== arg) value = arg.slice(eq + 1);
    else if (i + 1 < argv.length) value = argv[++i];
    else throw new UsageError(raw, 'needs a value');
    if (out.values.has(flag)) throw new UsageError(raw, 'given twice');
    out.values.set(flag, value);
    out.spelled.set(flag, raw);
  }
  return out;
}

/** Checks a path value: not empty, no NUL. */
export function pathValue(flag: string, v: string): string {
  if (v === '' || v.includes('\0')) throw new UsageError(flag, 'needs a path');
  return v;
}

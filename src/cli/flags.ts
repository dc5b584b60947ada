// Command-line flags: `--flag value` and `--flag=value`, switches, aliases, flags given more than once,
// bare words, `-h`/`--help`, and a UsageError naming the flag for every mistake. What each command takes
// is a table (grammar.ts); the parser, the usage text, the man pages' test and the completion's test all
// read that one table.

import { UsageError } from '../engine/errors.js';

/** One flag of a command. */
export interface Flag {
  name: string;
  /** What its value is, as the usage shows it (`CIDR`); none for a switch. */
  value?: string;
  /** One line: what it does, and its default. */
  help: string;
  /** Other spellings of it. */
  aliases?: readonly string[];
  /** It may be given more than once, its values kept in order. */
  many?: boolean;
  /** The heading it is listed under in the usage, for a command with many flags. */
  group?: string;
}

/** A command: how it is typed, what it takes, and what it says about itself. */
export interface Command {
  /** As typed: `softnet network add`. */
  name: string;
  /** What follows the name in its usage line. */
  synopsis: string;
  /** One or two sentences: what it does. */
  summary: string;
  flags: readonly Flag[];
  /** How many bare words (NAME, VM, ...) it takes among its flags. */
  words?: number;
  /** Other names it may be typed by (`list` for `ls`). */
  aliases?: readonly string[];
  /** The commands it groups: `softnet network` has `add`, `ls`, ... */
  subcommands?: readonly Command[];
}

/** What was given: values by flag (its main spelling), how each was spelled, and the bare words. */
export interface Given {
  values: Map<string, string>;
  /** Every value of a flag that may be given more than once, in order. */
  lists: Map<string, string[]>;
  spelled: Map<string, string>;
  words: string[];
}

/** `-h` or `--help` where a flag may stand: the caller prints the command's usage and exits 0. */
export class HelpWanted extends Error {
  constructor(readonly command: Command) {
    super(`help for ${command.name}`);
  }
}

/** Whether `arg` asks for help. */
export function isHelp(arg: string | undefined): boolean {
  return arg === '-h' || arg === '--help';
}

/** The flag of `command` spelled `raw` (its name or an alias). */
function lookup(command: Command, raw: string): Flag | undefined {
  return command.flags.find((f) => f.name === raw || f.aliases?.includes(raw));
}

/** Parses `argv` against `command`; throws UsageError for an unknown flag, a missing value or a repeat. */
export function parseFlags(argv: readonly string[], command: Command): Given {
  const out: Given = { values: new Map(), lists: new Map(), spelled: new Map(), words: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (isHelp(arg)) throw new HelpWanted(command);
    const eq = arg.indexOf('=');
    const raw = arg.startsWith('--') && eq > 0 ? arg.slice(0, eq) : arg;
    const flag = lookup(command, raw);
    if (flag === undefined) {
      if (!arg.startsWith('-') && out.words.length < (command.words ?? 0)) {
        out.words.push(arg);
        continue;
      }
      throw new UsageError(raw, arg.startsWith('-') ? 'unknown flag' : 'unexpected argument');
    }
    let value = '';
    if (flag.value === undefined) {
      if (raw !== arg) throw new UsageError(raw, 'takes no value');
    } else if (raw !== arg) value = arg.slice(eq + 1);
    else if (i + 1 < argv.length) value = argv[++i];
    else throw new UsageError(raw, 'needs a value');
    if (flag.many) out.lists.set(flag.name, [...(out.lists.get(flag.name) ?? []), value]);
    else if (out.values.has(flag.name)) throw new UsageError(raw, 'given twice');
    out.values.set(flag.name, value);
    out.spelled.set(flag.name, raw);
  }
  return out;
}

/** The last word of a command's name: what is typed to reach it from its parent. */
export function wordOf(command: Command): string {
  return command.name.slice(command.name.lastIndexOf(' ') + 1);
}

/**
 * The command `argv` names below `root` (by its leading words) and what it was given; throws UsageError for
 * a word that names no command, HelpWanted for `-h`/`--help`.
 */
export function resolve(root: Command, argv: readonly string[]): { command: Command; given: Given } {
  let command = root;
  let i = 0;
  for (; command.subcommands !== undefined && i < argv.length && !argv[i].startsWith('-'); i++) {
    const word = argv[i];
    const sub = command.subcommands.find((c) => wordOf(c) === word || c.aliases?.includes(word));
    if (sub === undefined)
      throw new UsageError(
        word,
        `is not a command of ${command.name}: ${command.subcommands.map(wordOf).join(', ')}`,
      );
    command = sub;
  }
  return { command, given: parseFlags(argv.slice(i), command) };
}

/** Checks a path value: not empty, no NUL. */
export function pathValue(flag: string, v: string): string {
  if (v === '' || v.includes('\0')) throw new UsageError(flag, 'needs a path');
  return v;
}

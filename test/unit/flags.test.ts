// The flag parser and the grammar of every command: subcommands by their words, -h/--help, switches,
// repeatable flags, and a usage text that lists exactly what the parser takes.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type Command, HelpWanted, parseFlags, resolve } from '../../src/cli/flags.js';
import {
  ALL_COMMANDS,
  CAPTURE,
  NETWORK,
  NETWORK_ADD,
  NETWORK_LS,
  SERVE,
  SOFTNET,
  VMTOOL,
  VMTOOL_RUN,
} from '../../src/cli/grammar.js';
import { usage } from '../../src/cli/usage.js';
import { UsageError } from '../../src/engine/errors.js';
import { ADD_FLAG } from '../../src/engine/service.js';
import { NETWORK_FLAG } from '../../src/net/network-spec.js';

/** Asserts that `fn` throws a UsageError naming `flag` with a detail matching `re`. */
function refuses(fn: () => unknown, flag: string, re: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof UsageError, `not a UsageError: ${e}`);
    assert.equal(e.flag, flag, e.message);
    assert.match(e.detail, re);
    return true;
  });
}

/** The command that `-h` anywhere a flag may stand asks the usage of. */
function helpOf(root: Command, argv: string[]): Command {
  try {
    resolve(root, argv);
  } catch (e) {
    if (e instanceof HelpWanted) return e.command;
    throw e;
  }
  assert.fail(`no help for ${argv.join(' ')}`);
}

test('subcommands are found by their words and aliases, and a bad word is named', () => {
  assert.equal(resolve(SOFTNET, ['serve']).command, SERVE);
  assert.equal(resolve(SOFTNET, ['network', 'list', '--json']).command, NETWORK_LS);
  assert.equal(resolve(SOFTNET, ['network']).command, NETWORK);
  assert.equal(resolve(SOFTNET, ['--vm-fd', '3']).command, SOFTNET);
  assert.deepEqual(resolve(SOFTNET, ['network', 'add', 'lab', '--cidr', '10.1.0.0/24']).given.words, ['lab']);
  refuses(() => resolve(SOFTNET, ['network', 'bogus']), 'bogus', /not a command of softnet network: add, ls/);
  refuses(() => resolve(SOFTNET, ['bogus']), 'bogus', /not a command of softnet: serve, network/);
  refuses(() => resolve(VMTOOL, ['start']), 'start', /not a command of vmtool: run/);
});

test('-h and --help ask for the usage of the command they follow, wherever a flag may stand', () => {
  assert.equal(helpOf(SOFTNET, ['--help']), SOFTNET);
  assert.equal(helpOf(SOFTNET, ['--vm-fd', '3', '-h']), SOFTNET);
  assert.equal(helpOf(SOFTNET, ['serve', '--state-dir', '/x', '--help']), SERVE);
  assert.equal(helpOf(SOFTNET, ['network', '-h']), NETWORK);
  assert.equal(helpOf(SOFTNET, ['network', 'add', 'x', '--help']), NETWORK_ADD);
  assert.equal(helpOf(SOFTNET, ['capture', '-h']), CAPTURE);
  assert.equal(helpOf(VMTOOL, ['run', '--help']), VMTOOL_RUN);
  // As a flag's value it is that value.
  assert.equal(resolve(SOFTNET, ['--state-dir', '--help']).given.values.get('--state-dir'), '--help');
  // A bad flag before it is still the one reported.
  refuses(() => resolve(SOFTNET, ['--frobnicate', '--help']), '--frobnicate', /unknown flag/);
});

test('switches take no value; repeatable flags keep every value in order', () => {
  refuses(() => parseFlags(['--reject=yes'], SOFTNET), '--reject', /takes no value/);
  refuses(() => parseFlags(['--reject', '--reject'], SOFTNET), '--reject', /given twice/);
  const g = parseFlags(['--net-softnet-arg', '--vm-name', '--net-softnet-arg=ci-1'], VMTOOL_RUN);
  assert.deepEqual(g.lists.get('--net-softnet-arg'), ['--vm-name', 'ci-1']);
  refuses(() => parseFlags(['-w', 'a', '-w', 'b'], CAPTURE), '-w', /given twice/);
  refuses(() => parseFlags(['-c'], CAPTURE), '-c', /needs a value/);
});

test('--version is a flag of softnet and vmtool alone', () => {
  assert.ok(resolve(SOFTNET, ['--version']).given.values.has('--version'));
  assert.ok(resolve(VMTOOL, ['--version']).given.values.has('--version'));
  refuses(() => resolve(SOFTNET, ['serve', '--version']), '--version', /unknown flag/);
});

test('every command takes -h and --help, and its usage lists each of its flags and nothing else', () => {
  for (const c of ALL_COMMANDS) {
    assert.equal(helpOf(c, ['-h']), c, c.name);
    const text = usage(c);
    assert.ok(text.startsWith(`usage: ${c.name}`), text);
    const listed = new Set<string>();
    for (const line of text.split('\n').filter((l) => /^ {2}-/.test(l))) {
      for (const label of line
        .trim()
        .split(/\s{2,}/)[0]
        .split(', '))
        listed.add(label.split(' ')[0]);
      for (const alias of /\(also ([^)]+)\)/.exec(line)?.[1].split(', ') ?? []) listed.add(alias);
    }
    const known = new Set(c.flags.flatMap((f) => [f.name, ...(f.aliases ?? [])]));
    assert.deepEqual([...listed].sort(), [...known].sort(), c.name);
    // Every flag its synopsis names is one it takes.
    for (const f of c.synopsis.match(/(?<![\w-])--?[a-z][a-z-]*/g) ?? [])
      assert.ok(known.has(f), `${c.name}: synopsis names ${f}`);
  }
});

test("the grammar's network flags are the ones the specs map to fields", () => {
  const perVm = new Set(SOFTNET.flags.map((f) => f.name));
  for (const [field, flag] of Object.entries(NETWORK_FLAG))
    if (field !== 'type' && field !== 'reservations') assert.ok(perVm.has(flag), flag);
  const add = NETWORK_ADD.flags.map((f) => f.name).filter((f) => f !== '--control-socket' && f !== '--json');
  const mapped = Object.values(ADD_FLAG).filter((f) => f.startsWith('--') && f !== '--dhcp-host');
  assert.deepEqual([...add].filter((f) => f !== '--help').sort(), [...mapped].sort());
});

// The bash completion (completions/softnet.bash): its table agrees with the parser's (grammar.ts), and,
// sourced in a real bash, it completes subcommands, flags, flag values, and the network and VM names of a
// running `softnet serve`.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { wordOf } from '../../src/cli/flags.js';
import { ALL_COMMANDS } from '../../src/cli/grammar.js';
import { controlSocket, softnetForVm, startSoftnet } from '../lib/softnet.js';
import { Topology } from '../lib/topology.js';

const run = promisify(execFile);
const file = (path: string) => fileURLToPath(new URL(`../../../${path}`, import.meta.url));
const SCRIPT = file('completions/softnet.bash');
const BIN = file('bin/softnet');

/** Sources the script ($1), sets the words to complete (the rest) and prints what _softnet proposes. */
const COMPLETE = [
  'source "$1"; shift',
  'COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1))',
  '_softnet',
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a bash expansion, not a template
  'printf "%s\\n" "${COMPREPLY[@]}"',
].join('\n');

/** What bash completes for the command line `words`, the cursor on the last one. */
async function complete(words: string[]): Promise<string[]> {
  const r = await run('bash', ['--norc', '-c', COMPLETE, 'bash', SCRIPT, ...words]);
  return r.stdout.split('\n').filter(Boolean);
}

/** The script's table: command -> its flags, the flags that take a value, its subcommands. */
function scriptTable(): Map<string, { flags: string[]; values: string[]; subs: string[] }> {
  const table = new Map();
  const line = /^\s+'([^']+)'\) flags='([^']*)'; values='([^']*)'; subs='([^']*)' ;;$/gm;
  for (const m of readFileSync(SCRIPT, 'utf8').matchAll(line)) {
    const words = (s: string) => s.split(' ').filter(Boolean).sort();
    table.set(m[1], { flags: words(m[2]), values: words(m[3]), subs: words(m[4]) });
  }
  return table;
}

describe('bash completion', () => {
  test("its table is the parser's: every command, its flags, which take a value, its subcommands", () => {
    const table = scriptTable();
    assert.deepEqual([...table.keys()].sort(), ALL_COMMANDS.map((c) => c.name).sort());
    for (const c of ALL_COMMANDS) {
      const names = (flags: typeof c.flags) => flags.flatMap((f) => [f.name, ...(f.aliases ?? [])]).sort();
      assert.deepEqual(table.get(c.name), {
        flags: names(c.flags),
        values: names(c.flags.filter((f) => f.value !== undefined)),
        subs: (c.subcommands ?? []).flatMap((s) => [wordOf(s), ...(s.aliases ?? [])]).sort(),
      });
    }
  });

  test('it completes subcommands, flags and flag values', async () => {
    assert.deepEqual(await complete(['softnet', 'net']), ['network']);
    assert.deepEqual(await complete(['softnet', 'network', '']), [
      'add',
      'ls',
      'list',
      'rm',
      'remove',
      'list-attached',
      'reserve',
    ]);
    assert.deepEqual(await complete(['softnet', 'serve', '--st']), ['--state-dir']);
    assert.deepEqual(await complete(['softnet', '--vm-fd', '3', '--vm-net-type', 'd']), ['disconnected']);
    assert.deepEqual(await complete(['softnet', 'network', 'add', 'lab', '--ty']), ['--type']);
    assert.deepEqual(await complete(['vmtool', 'run', '--net-softnet-s']), ['--net-softnet-socket']);
    // A flag's value is not taken for a subcommand.
    assert.deepEqual(await complete(['softnet', '--state-dir', 'serve', '--con']), ['--control-socket']);
    const r = await run('bash', ['--norc', '-c', 'source "$1"; complete -p softnet vmtool', 'bash', SCRIPT]);
    assert.match(r.stdout, /complete -F _softnet softnet\n.*complete -F _softnet vmtool/s);
  });

  describe('with a running engine', () => {
    const topo = new Topology();
    after(() => topo.cleanup());

    test('network names and VM names come from the engine at the control socket the line names', {
      timeout: 120_000,
    }, async () => {
      const host = await topo.netns('host');
      const vm = await topo.netns('vm');
      const config = `${topo.dir}/softnet.json`;
      writeFileSync(config, JSON.stringify({ networks: [{ name: 'lab', cidr: '10.77.0.0/24' }] }));
      const service = startSoftnet(topo, host, [
        'serve',
        '--state-dir',
        `${topo.dir}/state`,
        '--config',
        config,
      ]);
      await service.waitFor(/softnet: serving /);
      await softnetForVm(topo, host, vm, '52:54:00:c0:00:07', ['--vm-name', 'ci-7']);
      const socket = ['--control-socket', controlSocket(topo)];
      assert.deepEqual(await complete([BIN, 'network', 'rm', ...socket, '']), ['default', 'lab']);
      assert.deepEqual(await complete([BIN, 'network', 'list-attached', ...socket, 'l']), ['lab']);
      assert.deepEqual(await complete([BIN, 'show', ...socket, 'ci']), ['ci-7']);
      assert.deepEqual(await complete([BIN, 'capture', ...socket, '']), ['ci-7']);
      assert.deepEqual(await complete([BIN, '--vm-fd', '3', ...socket, '--network', '']), ['default', 'lab']);
      // No engine there: nothing, and no error.
      assert.deepEqual(await complete([BIN, 'show', '--control-socket', `${topo.dir}/none.sock`, '']), []);
    });
  });
});

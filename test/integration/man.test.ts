// The man pages (man/): each passes `mandoc -T lint` without a warning, and names exactly the flags the
// parser takes for its commands (grammar.ts): none missing, none the parser does not know.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { Command } from '../../src/cli/flags.js';
import { CAPTURE, DEMO, NETWORK, SERVE, SHOW, SOFTNET, VMTOOL, VMTOOL_RUN } from '../../src/cli/grammar.js';

const run = promisify(execFile);
const page = (name: string) => fileURLToPath(new URL(`../../../man/${name}`, import.meta.url));

/** Each page, the commands it documents in full, and others whose flags it may mention. */
const PAGES: Array<{ name: string; documents: Command[]; mentions?: Command[] }> = [
  { name: 'softnet.8', documents: [SOFTNET, SHOW, CAPTURE, DEMO] },
  { name: 'softnet-serve.8', documents: [SERVE] },
  { name: 'softnet-network.8', documents: [NETWORK, ...NETWORK.subcommands!] },
  // vmtool passes flags on to the per-VM softnet.
  { name: 'vmtool.1', documents: [VMTOOL, VMTOOL_RUN], mentions: [SOFTNET] },
];

const flagsOf = (commands: Command[]) =>
  new Set(commands.flatMap((c) => c.flags.flatMap((f) => [f.name, ...(f.aliases ?? [])])));

/** The flags a rendered page names: `--long-flag` and `-x`, anywhere in its text. */
function flagsIn(text: string): Set<string> {
  return new Set(text.match(/(?<![\w-])(?:--[a-z][a-z0-9-]*[a-z0-9]|-[a-zA-Z])(?![\w-])/g) ?? []);
}

const BACKSPACE = String.fromCharCode(8);

/** The page as text: mandoc's ASCII output, lines unbroken, overstrikes (bold, underline) removed. */
async function rendered(name: string): Promise<string> {
  const r = await run('mandoc', ['-T', 'ascii', '-O', 'width=1000', page(name)]);
  const chars = [...r.stdout];
  return chars.filter((c, i) => c !== BACKSPACE && chars[i + 1] !== BACKSPACE).join('');
}

describe('man pages', () => {
  for (const p of PAGES) {
    test(`${p.name}: mandoc -T lint finds nothing at warning level or above`, async () => {
      const r = await run('mandoc', ['-T', 'lint', '-W', 'warning', page(p.name)]).catch((e) => e);
      assert.equal(r.stderr || r.stdout, '', `${p.name}:\n${r.stdout}${r.stderr}`);
      assert.equal(r.code ?? 0, 0);
    });

    test(`${p.name}: names every flag of ${p.documents.map((c) => c.name).join(', ')}, and no other`, async () => {
      const named = flagsIn(await rendered(p.name));
      const documented = flagsOf(p.documents);
      const allowed = flagsOf([...p.documents, ...(p.mentions ?? [])]);
      assert.deepEqual(
        [...documented].filter((f) => !named.has(f)),
        [],
        'flags the page leaves out',
      );
      assert.deepEqual(
        [...named].filter((f) => !allowed.has(f)),
        [],
        'flags the parser does not know',
      );
    });
  }

  test('the flag finder sees long and short flags, and not words with dashes or QEMU options', () => {
    assert.deepEqual(
      [...flagsIn('use --vm-fd N, -w FILE, -h; per-VM, -netdev dgram, x-y, 10-20, --, - for stdout')],
      ['--vm-fd', '-w', '-h'],
    );
  });
});

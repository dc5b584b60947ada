// The usage text `--help` prints, made from a command's table (grammar.ts), so it lists exactly the flags
// the parser takes.

import type { Command, Flag } from './flags.js';

const WIDTH = 100;

/** `text` broken into lines of at most WIDTH columns, each starting with `indent`. */
function wrap(text: string, indent: string): string {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line !== '' && indent.length + line.length + 1 + word.length > WIDTH) {
      lines.push(indent + line);
      line = word;
    } else line = line === '' ? word : `${line} ${word}`;
  }
  return [...lines, indent + line].join('\n');
}

/** A flag as the usage names it: `-h, --help` or `--subnet CIDR`. */
export function flagLabel(flag: Flag): string {
  const names = [...(flag.aliases ?? []).filter((a) => !a.startsWith('--')), flag.name];
  return flag.value === undefined ? names.join(', ') : `${names.join(', ')} ${flag.value}`;
}

/** The usage of `command`: its synopsis, what it does, its subcommands and its flags under their headings. */
export function usage(command: Command): string {
  const out = [`usage: ${command.name}${command.synopsis === '' ? '' : ` ${command.synopsis}`}`, ''];
  out.push(wrap(command.summary, ''));
  if (command.subcommands) {
    out.push('', 'commands:');
    for (const sub of command.subcommands) {
      const names = [sub.name.split(' ').at(-1), ...(sub.aliases ?? [])].join(', ');
      out.push(`  ${names}`, wrap(sub.summary, '      '));
    }
  }
  const column = Math.min(34, Math.max(...command.flags.map((f) => flagLabel(f).length)) + 4);
  let group: string | undefined;
  out.push('');
  for (const flag of command.flags) {
    if (flag.group !== group) {
      group = flag.group;
      out.push(group === undefined ? '' : `\n${group}:`);
    }
    const label = `  ${flagLabel(flag)}`;
    const alias = flag.aliases?.filter((a) => a.startsWith('--')) ?? [];
    const help = alias.length > 0 ? `${flag.help} (also ${alias.join(', ')})` : flag.help;
    out.push(
      label.length + 2 > column ? `${label}\n${' '.repeat(column)}${help}` : label.padEnd(column) + help,
    );
  }
  return `${out.join('\n').replace(/\n{3,}/g, '\n\n')}\n`;
}

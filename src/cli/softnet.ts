// `softnet`: the per-VM form (what a VM tool execs), the service, the operator's commands, and the demo.
// The command line is parsed here against the grammar before anything heavy is loaded, so `--help`,
// `--version` and a bad flag answer without starting an engine; each command's module is loaded after.

import { ControlError } from '../control/protocol.js';
import { NotPrivileged, UsageError } from '../engine/errors.js';
import { Logger } from '../util/log.js';
import { VERSION } from '../version.js';
import { type Command, type Given, HelpWanted, resolve, wordOf } from './flags.js';
import { CAPTURE, DEMO, NETWORK, PROBE_FLAG, SERVE, SHOW, SOFTNET } from './grammar.js';
import { usage } from './usage.js';

/**
 * Runs `command`, given `given`; `argv` is the whole command line, for a run again under sudo. Resolves
 * with the exit status, or null when the process ends by itself (a command that printed its answer) or
 * lives on (an engine, a per-VM process).
 */
async function run(command: Command, given: Given, argv: string[]): Promise<number | null> {
  if (command === SOFTNET) {
    const { vmOptions } = await import('./args.js');
    const opts = vmOptions(given);
    const { ensurePrivileged } = await import('./sudo.js');
    ensurePrivileged(argv, opts, opts.source.kind === 'fd' ? opts.source.fd : null);
    const { Supervisor } = await import('../engine/supervisor.js');
    await new Supervisor(opts, new Logger(opts.logFormat), (code) => process.exit(code)).start();
    return null;
  }
  if (command === SERVE) {
    await (await import('./serve.js')).runServe(given, argv.slice(1));
    return null;
  }
  if (command === CAPTURE) return (await import('./capture.js')).runCapture(given);
  if (command === DEMO) {
    await (await import('./demo.js')).runDemo();
    return null;
  }
  if (command === NETWORK)
    throw new UsageError('network', `needs a command: ${NETWORK.subcommands!.map(wordOf).join(', ')}`);
  if (command === SHOW || NETWORK.subcommands!.includes(command)) {
    await (await import('./commands.js')).runCommand(command, given);
    return null;
  }
  throw new Error(`no runner for ${command.name}`);
}

async function main(argv: string[]): Promise<void> {
  if (argv.at(-1) === PROBE_FLAG) {
    const { canOpenNetworks } = await import('../engine/privileges.js');
    process.exit(canOpenNetworks() ? 0 : 1);
  }
  const json = jsonLogs(argv);
  try {
    const { command, given } = resolve(SOFTNET, argv);
    if (given.values.has('--version')) {
      process.stdout.write(`softnet ${VERSION}\n`);
      return;
    }
    const code = await run(command, given, argv);
    if (code !== null) process.exit(code);
  } catch (e) {
    if (e instanceof HelpWanted) process.stdout.write(usage(e.command));
    else if (e instanceof UsageError) fail(2, e.flag, e.detail, json);
    else if (e instanceof ControlError) fail(e.flag ? 2 : 1, e.flag, e.message, json);
    else if (e instanceof NotPrivileged) fail(2, null, e.message, json);
    else crash(e, json);
  }
}

/** Whether the command line asks for JSON logs: read before it is parsed, so even its errors are JSON. */
function jsonLogs(argv: string[]): boolean {
  return argv.some((a, i) => a === '--log-format=json' || (a === '--log-format' && argv[i + 1] === 'json'));
}

/** Says why softnet cannot go on, in one line (naming `flag` when there is one), and exits with `code`. */
function fail(code: number, flag: string | null, why: string, json: boolean): never {
  if (json) new Logger('json').error('failed', { flag: flag ?? undefined, error: why });
  else process.stderr.write(`softnet: ${flag ? `${flag}: ` : ''}${why}\n`);
  process.exit(code);
}

/** An error nobody expected: its stack, in one JSON line or as text, and exit 1. */
function crash(e: unknown, json: boolean): never {
  const message = e instanceof Error ? e.message : String(e);
  const stack = e instanceof Error ? e.stack : undefined;
  if (json) new Logger('json').error('failed', { error: message, stack });
  else process.stderr.write(`softnet: ${stack ?? message}\n`);
  process.exit(1);
}

main(process.argv.slice(2));

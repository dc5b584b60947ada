// `softnet`: the per-VM form (what a VM tool execs), the service, the operator's commands, and the demo.

import { ControlError } from '../control/protocol.js';
import { UsageError } from '../engine/errors.js';
import { canOpenNetworks } from '../engine/privileges.js';
import { Supervisor } from '../engine/supervisor.js';
import { Logger } from '../util/log.js';
import { parseVmArgs, USAGE } from './args.js';
import { ensurePrivileged, NotPrivileged, PROBE_FLAG } from './sudo.js';

function main(argv: string[]): void {
  const cmd = argv[0];
  if (argv.at(-1) === PROBE_FLAG) process.exit(canOpenNetworks() ? 0 : 1);
  if (cmd === '--help' || cmd === '-h' || cmd === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const json = jsonLogs(argv);
  const fatal = (e: unknown) => crash(e, json);
  const failed = (e: unknown) => {
    if (e instanceof UsageError) fail(2, e.flag, e.detail, json);
    if (e instanceof NotPrivileged) fail(2, null, e.message, json);
    if (e instanceof ControlError) fail(e.flag ? 2 : 1, e.flag, e.message, json);
    fatal(e);
  };
  if (cmd === 'demo') {
    import('./demo.js').then((m) => m.runDemo(argv.slice(1)), fatal);
    return;
  }
  if (cmd === 'serve') {
    import('./serve.js').then((m) => m.runServe(argv.slice(1))).catch(failed);
    return;
  }
  if (cmd === 'capture') {
    import('./capture.js')
      .then((m) => m.runCapture(argv.slice(1)))
      .then((code) => process.exit(code))
      .catch(failed);
    return;
  }
  if (cmd === 'network' || cmd === 'show') {
    import('./commands.js').then((m) => m.runCommand(argv)).catch(failed);
    return;
  }
  try {
    const opts = parseVmArgs(argv);
    ensurePrivileged(argv, opts, opts.source.kind === 'fd' ? opts.source.fd : null);
    new Supervisor(opts, new Logger(opts.logFormat), (code) => process.exit(code)).start().catch(failed);
  } catch (e) {
    failed(e);
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

// `softnet`: the per-VM form (what a VM tool execs), the service, the operator's commands, and the demo.

import { ControlError } from '../control/protocol.js';
import { UsageError } from '../engine/errors.js';
import { Supervisor } from '../engine/supervisor.js';
import { Logger } from '../util/log.js';
import { parseVmArgs, USAGE } from './args.js';

function main(argv: string[]): void {
  const cmd = argv[0];
  if (cmd === '--help' || cmd === '-h' || cmd === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const failed = (e: unknown) => {
    if (e instanceof UsageError) {
      process.stderr.write(`softnet: ${e.message}\n`);
      process.exit(2);
    }
    if (e instanceof ControlError) {
      process.stderr.write(`softnet: ${e.flag ? `${e.flag}: ` : ''}${e.message}\n`);
      process.exit(e.flag ? 2 : 1);
    }
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
    new Supervisor(opts, new Logger(opts.logFormat), (code) => process.exit(code)).start().catch(failed);
  } catch (e) {
    failed(e);
  }
}

function fatal(e: unknown): never {
  process.stderr.write(`softnet: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
}

main(process.argv.slice(2));

// `softnet`: the per-VM form (what a VM tool execs) and the demo.

import { Engine } from '../engine/engine.js';
import { Logger } from '../util/log.js';
import { parseVmArgs, USAGE, UsageError } from './args.js';

function main(argv: string[]): void {
  if (argv[0] === '--help' || argv[0] === '-h') {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  if (argv[0] === 'demo') {
    import('./demo.js').then(
      (m) => m.runDemo(argv.slice(1)),
      (e) => fatal(e),
    );
    return;
  }
  const failed = (e: unknown) => {
    if (e instanceof UsageError) {
      process.stderr.write(`softnet: ${e.message}\n`);
      process.exit(2);
    }
    fatal(e);
  };
  try {
    const opts = parseVmArgs(argv);
    new Engine(opts, new Logger(opts.logFormat)).start().catch(failed);
  } catch (e) {
    failed(e);
  }
}

function fatal(e: unknown): never {
  process.stderr.write(`softnet: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
}

main(process.argv.slice(2));

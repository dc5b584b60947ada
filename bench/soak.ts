// The soak of issue 13: one `softnet serve`, VMs with real DHCP clients and constant TCP and UDP traffic,
// VMs leaving and attaching every few seconds, and every fault softnet must live through on a schedule;
// checks all along, a table at the end, exit 1 when any check fails (a VM slower than 5 s to reach the
// world after a fault included). Run as root: make soak, or node dist/bench/soak.js [--minutes N] [--vms N]
// [--churn-seconds S] [--fault-gap-seconds S] [--rss-limit-mb M] [--faults KIND,KIND]. When a check fails,
// softnet's logs are written to a directory under /tmp, named at the end.

import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { table } from './soak/report.js';
import { runSoak } from './soak/run.js';

function log(line: string): void {
  process.stderr.write(`${new Date().toISOString().slice(11, 23)} ${line}\n`);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      minutes: { type: 'string', default: '10' },
      vms: { type: 'string', default: '20' },
      'churn-seconds': { type: 'string', default: '4' },
      'fault-gap-seconds': { type: 'string', default: '5' },
      'rss-limit-mb': { type: 'string', default: '256' },
      faults: { type: 'string' },
    },
  });
  const minutes = Number(values.minutes);
  const vms = Number(values.vms);
  const churn = Number(values['churn-seconds']);
  const gap = Number(values['fault-gap-seconds']);
  const rss = Number(values['rss-limit-mb']);
  const valid =
    minutes > 0 &&
    minutes <= 24 * 60 &&
    Number.isInteger(vms) &&
    vms >= 1 &&
    vms <= 100 &&
    churn >= 1 &&
    gap >= 0 &&
    rss > 0;
  if (!valid)
    throw new Error('--minutes 0-1440, --vms 1-100, --churn-seconds >= 1, --fault-gap-seconds >= 0');
  if (process.getuid?.() !== 0) throw new Error('the soak makes namespaces and mounts: run it as root');
  const result = await runSoak({
    minutes,
    vms,
    churnMs: churn * 1000,
    faultGapMs: gap * 1000,
    recoveryLimitMs: 5000,
    enforceRecoveryLimit: true,
    recoveryWaitMs: 30_000,
    rssLimitBytes: rss * 2 ** 20,
    only: values.faults?.split(',') ?? null,
    logDir: join(tmpdir(), `softnet-soak-${new Date().toISOString().replace(/[:.]/g, '-')}`),
    log,
  });
  process.stdout.write(`\n${table(result)}`);
  if (result.failures.length) process.exitCode = 1;
}

main().catch((e) => {
  log(`soak: ${e instanceof Error ? e.message : e}`);
  process.exitCode = 1;
});

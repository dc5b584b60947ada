// What the figures were measured under: the machine, the tools' versions and how busy the machine was.

import { execFileSync } from 'node:child_process';
import { cpus, hostname, loadavg, release } from 'node:os';

/** The machine and tools of a run. */
export interface Conditions {
  hostname: string;
  kernel: string;
  cpus: number;
  cpuModel: string;
  node: string;
  tools: Record<string, string>;
}

function firstLine(cmd: string, args: string[]): string {
  try {
    const out = execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return out.split('\n')[0].trim();
  } catch {
    return 'unknown';
  }
}

/** Reads the machine's description and the versions of the tools the bench drives. */
export function conditions(): Conditions {
  // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own field syntax, not a template
  const debVersion = (pkg: string) => firstLine('dpkg-query', ['-W', '-f=${Version}', pkg]);
  return {
    hostname: hostname(),
    kernel: release(),
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    node: process.version,
    tools: {
      iperf3: debVersion('iperf3'),
      passt: debVersion('passt'),
      slirp4netns: debVersion('slirp4netns'),
      busybox: debVersion('busybox'),
    },
  };
}

/** The 1-minute load average, a rough sign of what else ran on the machine. */
export function load1(): number {
  return loadavg()[0];
}

// `vmtool run --net-softnet ...`: a small QEMU launcher that starts softnet exactly as Tart does. It makes
// an AF_UNIX datagram socketpair, gives one end to `softnet --vm-fd 3 --vm-mac-address MAC ...` and the
// other to QEMU's `-netdev dgram`; or, with --net-softnet-socket, starts softnet on a unix stream socket
// and QEMU's `-netdev stream` on it. QEMU's serial console is vmtool's stdout. Signals go to QEMU; when
// QEMU exits, softnet is stopped and vmtool exits with QEMU's status.

import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UsageError } from '../engine/errors.js';
import { native } from '../native.js';
import { VERSION } from '../version.js';
import { isUnicastMac, parseMac } from '../wire/addr.js';
import { type Given, HelpWanted, resolve } from './flags.js';
import { VMTOOL } from './grammar.js';
import { usage } from './usage.js';

interface RunOptions {
  kernel: string;
  initrd: string;
  append: string;
  memory: number;
  mac: string;
  socket: boolean;
  softnetArgs: string[];
  accel?: 'kvm' | 'tcg';
}

/** The options of `vmtool run` from its parsed flags (grammar.ts: VMTOOL_RUN). */
function runOptions(g: Given): RunOptions {
  const v = (flag: string) => g.values.get(flag);
  const o: Partial<RunOptions> & { softnetArgs: string[] } = {
    softnetArgs: [],
    append: v('--append') ?? '',
    memory: 256,
    socket: g.values.has('--net-softnet-socket'),
  };
  for (const [flag, softnetFlag] of [
    ['--net-softnet-allow', '--allow'],
    ['--net-softnet-block', '--block'],
    ['--net-softnet-expose', '--expose'],
  ])
    if (g.values.has(flag)) o.softnetArgs.push(softnetFlag, v(flag)!);
  o.softnetArgs.push(...(g.lists.get('--net-softnet-arg') ?? []));
  const macText = v('--mac');
  if (macText !== undefined) {
    const mac = parseMac(macText);
    if (!mac || !isUnicastMac(mac))
      throw new UsageError('--mac', `'${macText}' is not a unicast MAC address`);
    o.mac = macText;
  }
  const memory = v('--memory');
  if (memory !== undefined) {
    o.memory = Number(memory);
    if (!/^\d+$/.test(memory) || o.memory < 32)
      throw new UsageError('--memory', `'${memory}' is not a size in MB`);
  }
  const accel = v('--accel');
  if (accel !== undefined) {
    if (accel !== 'kvm' && accel !== 'tcg') throw new UsageError('--accel', `'${accel}' is not kvm or tcg`);
    o.accel = accel;
  }
  o.kernel = v('--kernel');
  o.initrd = v('--initrd');
  if (!g.values.has('--net-softnet'))
    throw new UsageError('--net-softnet', 'is required: softnet is the only network vmtool has');
  for (const f of ['kernel', 'initrd'] as const) {
    if (!o[f]) throw new UsageError(`--${f}`, 'is required');
    if (!existsSync(o[f])) throw new UsageError(`--${f}`, `${o[f]}: no such file`);
  }
  o.mac ??= `52:54:00:${[0, 0, 0]
    .map(() =>
      Math.floor(Math.random() * 256)
        .toString(16)
        .padStart(2, '0'),
    )
    .join(':')}`;
  return o as RunOptions;
}

function waitFor(path: string, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const poll = () => {
      if (existsSync(path)) resolve();
      else if (Date.now() > deadline) reject(new Error(`softnet did not create ${path}`));
      else setTimeout(poll, 20);
    };
    poll();
  });
}

/**
 * How vmtool starts softnet: the `softnet` command installed beside its own (bin/, or PREFIX/bin), so a
 * user's softnet escalates itself through the sudoers drop-in that names exactly that command, as Tart's
 * does; only softnet gets root, never QEMU or vmtool. Run from its compiled file instead, node and
 * softnet.js.
 */
function softnetCommand(): string[] {
  const self = process.argv[1] ?? '';
  const beside = join(dirname(self), 'softnet');
  if (basename(self) === 'vmtool' && existsSync(beside)) return [beside];
  return [process.execPath, fileURLToPath(new URL('./softnet.js', import.meta.url))];
}

async function run(o: RunOptions): Promise<number> {
  const [softnetExe, ...softnetPre] = softnetCommand();
  // /dev/kvm alone is not enough: some hosts offer a KVM (kvm-pvm) that cannot boot a stock kernel.
  const accel =
    o.accel ??
    (existsSync('/dev/kvm') && (existsSync('/sys/module/kvm_intel') || existsSync('/sys/module/kvm_amd'))
      ? 'kvm'
      : 'tcg');
  const qemuArgs = [
    '-nographic',
    '-no-reboot',
    '-accel',
    accel,
    '-m',
    String(o.memory),
    '-kernel',
    o.kernel,
    '-initrd',
    o.initrd,
    '-append',
    `console=ttyS0 panic=-1 ${o.append}`.trim(),
    '-device',
    `virtio-net-pci,netdev=n0,mac=${o.mac}`,
  ];
  let softnet: ChildProcess;
  let qemu: ChildProcess;
  let dir: string | null = null;
  if (o.socket) {
    dir = mkdtempSync(join(tmpdir(), 'vmtool-'));
    const path = join(dir, 'net.sock');
    softnet = spawn(
      softnetExe,
      [...softnetPre, '--vm-socket', path, '--vm-mac-address', o.mac, ...o.softnetArgs],
      {
        stdio: ['ignore', 'inherit', 'inherit'],
      },
    );
    await waitFor(path, 10_000);
    qemu = spawn(
      'qemu-system-x86_64',
      [...qemuArgs, '-netdev', `stream,id=n0,server=off,addr.type=unix,addr.path=${path}`],
      {
        stdio: ['ignore', 'inherit', 'inherit'],
      },
    );
  } else {
    const [vmEnd, softnetEnd] = native.socketpair('dgram');
    softnet = spawn(
      softnetExe,
      [...softnetPre, '--vm-fd', '3', '--vm-mac-address', o.mac, ...o.softnetArgs],
      {
        stdio: ['ignore', 'inherit', 'inherit', softnetEnd],
      },
    );
    qemu = spawn('qemu-system-x86_64', [...qemuArgs, '-netdev', 'dgram,id=n0,local.type=fd,local.str=3'], {
      stdio: ['ignore', 'inherit', 'inherit', vmEnd],
    });
    native.closeFd(vmEnd);
    native.closeFd(softnetEnd);
  }
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => qemu.kill(sig));
  const softnetDone = new Promise<void>((resolve) => softnet.once('exit', () => resolve()));
  softnet.once('exit', (code) => {
    if (qemu.exitCode === null && qemu.signalCode === null) {
      process.stderr.write(`vmtool: softnet exited (${code}) before the VM; stopping the VM\n`);
      qemu.kill('SIGTERM');
    }
  });
  const status = await new Promise<number>((resolve) => {
    qemu.once('error', (e) => {
      process.stderr.write(`vmtool: qemu-system-x86_64: ${e.message}\n`);
      resolve(1);
    });
    qemu.once('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
  if (softnet.exitCode === null && softnet.signalCode === null) softnet.kill('SIGTERM');
  await softnetDone;
  if (dir) rmSync(dir, { recursive: true, force: true });
  return status;
}

function main(argv: string[]): void {
  let o: RunOptions;
  try {
    const { command, given } = resolve(VMTOOL, argv);
    if (given.values.has('--version')) {
      process.stdout.write(`vmtool ${VERSION}\n`);
      return;
    }
    // `vmtool` alone says how it is used.
    if (command === VMTOOL) throw new HelpWanted(VMTOOL);
    o = runOptions(given);
  } catch (e) {
    if (e instanceof HelpWanted) {
      process.stdout.write(usage(e.command));
      return;
    }
    if (e instanceof UsageError) {
      process.stderr.write(`vmtool: ${e.message}\n`);
      process.exit(2);
    }
    throw e;
  }
  run(o).then(
    (code) => process.exit(code),
    (e) => {
      process.stderr.write(`vmtool: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exit(1);
    },
  );
}

main(process.argv.slice(2));

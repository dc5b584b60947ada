// `vmtool run --net-softnet ...`: a small QEMU launcher that starts softnet exactly as Tart does. It makes
// an AF_UNIX datagram socketpair, gives one end to `softnet --vm-fd 3 --vm-mac-address MAC ...` and the
// other to QEMU's `-netdev dgram`; or, with --net-softnet-socket, starts softnet on a unix stream socket
// and QEMU's `-netdev stream` on it. QEMU's serial console is vmtool's stdout. Signals go to QEMU; when
// QEMU exits, softnet is stopped and vmtool exits with QEMU's status.

import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { native } from '../native.js';
import { isUnicastMac, parseMac } from '../wire/addr.js';
import { UsageError } from './args.js';

const USAGE = `usage: vmtool run --net-softnet [--net-softnet-allow CIDRs] [--net-softnet-block CIDRs]
                  [--net-softnet-expose SPECS] [--net-softnet-arg ARG]... [--net-softnet-socket]
                  [--mac MAC] [--memory MB] [--accel kvm|tcg] --kernel FILE --initrd FILE [--append ARGS]`;

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

function parse(argv: string[]): RunOptions {
  if (argv[0] !== 'run') throw new UsageError(argv[0] ?? 'run', 'the only command is run');
  const o: Partial<RunOptions> & { softnetArgs: string[]; net?: boolean } = {
    softnetArgs: [],
    append: '',
    memory: 256,
    socket: false,
  };
  const value = (i: number, flag: string) => {
    if (i >= argv.length) throw new UsageError(flag, 'needs a value');
    return argv[i];
  };
  for (let i = 1; i < argv.length; i++) {
    const flag = argv[i];
    switch (flag) {
      case '--net-softnet':
        o.net = true;
        break;
      case '--net-softnet-socket':
        o.socket = true;
        break;
      case '--net-softnet-allow':
        o.softnetArgs.push('--allow', value(++i, flag));
        break;
      case '--net-softnet-block':
        o.softnetArgs.push('--block', value(++i, flag));
        break;
      case '--net-softnet-expose':
        o.softnetArgs.push('--expose', value(++i, flag));
        break;
      case '--net-softnet-arg':
        o.softnetArgs.push(value(++i, flag));
        break;
      case '--mac': {
        const mac = parseMac(value(++i, flag));
        if (!mac || !isUnicastMac(mac))
          throw new UsageError(flag, `'${argv[i]}' is not a unicast MAC address`);
        o.mac = argv[i];
        break;
      }
      case '--memory':
        o.memory = Number(value(++i, flag));
        if (!Number.isInteger(o.memory) || o.memory < 32)
          throw new UsageError(flag, `'${argv[i]}' is not a size in MB`);
        break;
      case '--accel': {
        const a = value(++i, flag);
        if (a !== 'kvm' && a !== 'tcg') throw new UsageError(flag, `'${a}' is not kvm or tcg`);
        o.accel = a;
        break;
      }
      case '--kernel':
        o.kernel = value(++i, flag);
        break;
      case '--initrd':
        o.initrd = value(++i, flag);
        break;
      case '--append':
        o.append = value(++i, flag);
        break;
      default:
        throw new UsageError(flag, 'unknown flag');
    }
  }
  if (!o.net) throw new UsageError('--net-softnet', 'is required: softnet is the only network vmtool has');
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

async function run(o: RunOptions): Promise<number> {
  const softnetJs = fileURLToPath(new URL('./softnet.js', import.meta.url));
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
      process.execPath,
      [softnetJs, '--vm-socket', path, '--vm-mac-address', o.mac, ...o.softnetArgs],
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
      process.execPath,
      [softnetJs, '--vm-fd', '3', '--vm-mac-address', o.mac, ...o.softnetArgs],
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
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h') {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  let o: RunOptions;
  try {
    o = parse(argv);
  } catch (e) {
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

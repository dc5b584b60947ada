// `softnet demo`: the embedded default. It builds throwaway namespaces: a "host" where softnet runs (so its
// host link never touches this machine's interfaces), a VM whose NIC softnet makes, and a small world
// joined to the host by a veth, with a web server. A real DHCP client in the VM gets a lease; the VM pings
// the gateway, the host pings the VM, the VM fetches a page from a host service at the gateway and one
// from the world through NAT. Everything it made is removed at the end, also on failure or Ctrl-C.

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const VM_MAC = '52:54:00:de:00:01';
const WORLD_SERVER = '198.51.100.10';

function sh(ns: string | null, cmd: string, args: string[], timeout = 30_000): string {
  const argv = ns ? ['netns', 'exec', ns, cmd, ...args] : args;
  return execFileSync(ns ? 'ip' : cmd, argv, {
    encoding: 'utf8',
    timeout,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

function attempt(ns: string, cmd: string, args: string[]): { ok: boolean; out: string } {
  try {
    return { ok: true, out: sh(ns, cmd, args, 10_000) };
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string };
    return { ok: false, out: `${err.stdout ?? ''}${err.stderr ?? ''}` };
  }
}

/** Runs the demo; exits non-zero if the VM gets no lease or cannot reach its gateway. */
export async function runDemo(): Promise<void> {
  const id = `softnet-demo-${process.pid}`;
  const ns = { host: `${id}-host`, vm: `${id}-vm`, world: `${id}-world` };
  const dir = mkdtempSync(join(tmpdir(), 'softnet-demo-'));
  const children: ChildProcess[] = [];
  let cleaned = false;
  const cleanup = () => {
    if (cleaned) return;
    cleaned = true;
    for (const c of children) c.kill('SIGTERM');
    for (const n of Object.values(ns)) {
      try {
        for (const pid of sh(null, 'ip', ['netns', 'pids', n]).split('\n').filter(Boolean))
          process.kill(Number(pid), 'SIGKILL');
        sh(null, 'ip', ['netns', 'del', n]);
      } catch {}
    }
    rmSync(dir, { recursive: true, force: true });
  };
  process.on('SIGINT', () => {
    cleanup();
    process.exit(130);
  });
  const say = (line: string) => process.stdout.write(`${line}\n`);

  try {
    for (const n of Object.values(ns)) {
      sh(null, 'ip', ['netns', 'add', n]);
      sh(n, 'ip', ['link', 'set', 'lo', 'up']);
    }
    say(`namespaces: ${Object.values(ns).join(', ')}`);
    sh(null, 'ip', [
      'link',
      'add',
      'sndemo0',
      'netns',
      ns.host,
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'netns',
      ns.world,
    ]);
    sh(ns.host, 'ip', ['addr', 'add', '198.51.100.1/24', 'dev', 'sndemo0']);
    sh(ns.host, 'ip', ['link', 'set', 'sndemo0', 'up']);
    sh(ns.world, 'ip', ['addr', 'add', `${WORLD_SERVER}/24`, 'dev', 'eth0']);
    sh(ns.world, 'ip', ['link', 'set', 'eth0', 'up']);
    for (const [n, text] of [
      [ns.world, 'hello from the world'],
      [ns.host, 'hello from the host'],
    ]) {
      const www = join(dir, `www-${n}`);
      execFileSync('mkdir', ['-p', www]);
      writeFileSync(join(www, 'hello.txt'), `${text}\n`);
      const httpd = spawn('ip', ['netns', 'exec', n, 'busybox', 'httpd', '-f', '-p', '8080', '-h', www], {
        stdio: 'ignore',
      });
      children.push(httpd);
    }

    const log: string[] = [];
    const softnet = spawn(
      'ip',
      [
        'netns',
        'exec',
        ns.host,
        process.execPath,
        fileURLToPath(new URL('./softnet.js', import.meta.url)),
        '--vm-netns',
        `/run/netns/${ns.vm}`,
        '--vm-mac-address',
        VM_MAC,
        '--state-dir',
        join(dir, 'state'),
        // Its own engine: never a softnet service this machine may be running.
        '--control-socket',
        join(dir, 'control.sock'),
        '--uplink',
        'sndemo0',
        // The demo's world uses a documentation range, which the default policy treats as non-global.
        '--allow',
        '198.51.100.0/24',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    children.push(softnet);
    softnet.stderr.setEncoding('utf8');
    softnet.stderr.on('data', (d: string) => log.push(...d.split('\n').filter(Boolean)));
    const deadline = Date.now() + 10_000;
    while (!log.some((l) => l.includes('softnet: started'))) {
      if (softnet.exitCode !== null || Date.now() > deadline)
        throw new Error(`softnet did not start:\n${log.join('\n')}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    say(`softnet: ${log.find((l) => l.includes('started'))!.replace('softnet: started ', '')}`);

    const leaseFile = join(dir, 'lease.env');
    const script = join(dir, 'udhcpc.sh');
    writeFileSync(
      script,
      `#!/bin/sh\ncase "$1" in bound) ip addr add "$ip/$mask" dev "$interface"; ip route add default via "$router"; ` +
        `echo "ip=$ip mask=$mask router=$router lease=$lease dns=$dns" > ${leaseFile} ;; esac\nexit 0\n`,
      { mode: 0o755 },
    );
    sh(ns.vm, 'busybox', ['udhcpc', '-i', 'eth0', '-f', '-q', '-n', '-t', '5', '-T', '2', '-s', script]);
    const lease = Object.fromEntries(
      readFileSync(leaseFile, 'utf8')
        .trim()
        .split(' ')
        .map((kv) => kv.split('=')),
    );
    const mac = sh(ns.vm, 'cat', ['/sys/class/net/eth0/address']).trim();
    say(
      `VM lease: address ${lease.ip}/${lease.mask}, MAC ${mac}, lease ${lease.lease} s, gateway ${lease.router}, DNS ${lease.dns}`,
    );

    const ping = sh(ns.vm, 'ping', ['-c', '3', '-i', '0.2', '-W', '2', lease.router]);
    say(`VM -> gateway ping: ${ping.match(/\d+ received/)?.[0]}, rtt ${ping.match(/= ([\d.]+)\//)?.[1]} ms`);
    const back = sh(ns.host, 'ping', ['-c', '3', '-i', '0.2', '-W', '2', lease.ip]);
    say(`host -> VM ping: ${back.match(/\d+ received/)?.[0]}`);
    const hostPage = attempt(ns.vm, 'curl', ['-sS', '-m', '3', `http://${lease.router}:8080/hello.txt`]);
    say(
      `VM -> host service http://${lease.router}:8080/: ${hostPage.ok ? JSON.stringify(hostPage.out.trim()) : 'failed'}`,
    );
    const world = attempt(ns.vm, 'curl', ['-sS', '-m', '3', `http://${WORLD_SERVER}:8080/hello.txt`]);
    say(
      `VM -> world http://${WORLD_SERVER}:8080/ through NAT: ${world.ok ? JSON.stringify(world.out.trim()) : `failed: ${world.out.trim()}`}`,
    );
    softnet.kill('SIGTERM');
    await new Promise((r) => softnet.once('exit', r));
    for (const l of log.filter((l) => /lease (offered|bound)/.test(l))) say(l);
  } finally {
    cleanup();
    say('removed everything the demo made');
  }
}

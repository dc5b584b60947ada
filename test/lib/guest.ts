// A real Linux guest for QEMU, built at test time from Debian packages only: the kernel of Debian's
// linux-image package (downloaded with `apt-get download` and unpacked with dpkg-deb, never installed on the
// host) and an initramfs of busybox-static (downloaded and unpacked the same way, since installing it would
// replace the busybox package the other tests use) plus the kernel's virtio network modules.
//
// The initramfs's /init mounts proc, sys and dev, loads the modules, gets a lease with udhcpc, fetches a
// file over HTTP with nc and hashes it, looks up a name, tries a destination that should be blocked, says
// what happened on the serial console in lines that start with "GUEST ", and powers off. Given an IPv6 URL
// too, it also waits for the kernel's SLAAC address (router advertisements accepted on eth0 from the
// moment it is up) and fetches and hashes that URL over IPv6. What to fetch,
// look up and try comes from the kernel command line (see guestAppend), so one image serves every test.
//
// Everything is cached in one directory per kernel package version (SOFTNET_GUEST_CACHE, by default
// /var/cache/softnet-test), so a machine pays for the download once; each entry is made in a temporary
// directory and renamed into place whole, so a missing, stale or half-made cache only means a rebuild.

import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';

const run = promisify(execFile);

/** Where images are kept between runs unless SOFTNET_GUEST_CACHE says otherwise. */
export const DEFAULT_CACHE = '/var/cache/softnet-test';

/** The virtio network stack of Debian's kernel, in the order it must be loaded (each may be built in). */
export const MODULES = [
  'virtio_ring',
  'virtio',
  'virtio_pci_legacy_dev',
  'virtio_pci_modern_dev',
  'virtio_pci',
  'failover',
  'net_failover',
  'virtio_net',
] as const;

/** A bootable guest: a kernel and an initramfs for QEMU's -kernel and -initrd. */
export interface GuestImage {
  kernel: string;
  initrd: string;
  /** The kernel package, e.g. linux-image-6.1.0-56-amd64, and its Debian version. */
  kernelPackage: string;
  kernelVersion: string;
  /** What the guest's `uname -r` says. */
  release: string;
  /** Modules the initramfs loads (the others of MODULES are built into the kernel). */
  modules: string[];
  /** Whether everything came from the cache. */
  cached: boolean;
  /** How long getting it took. */
  ms: number;
}

/** What the guest does once it has a lease. */
export interface GuestTask {
  /** An HTTP URL (plain http, an IPv4 address, a port) to fetch and hash. */
  fetch: string;
  /** An address and port ("10.1.2.3:8080") that a TCP connection must not reach. */
  blocked: string;
  /** A name to look up through the DNS server the lease names. */
  lookup?: string;
  /** An HTTP URL with an IPv6 address (http://[ADDR]:PORT/PATH) to fetch and hash once SLAAC gave an address. */
  fetch6?: string;
}

/** The kernel command line (after vmtool's console=ttyS0 panic=-1) that gives the guest its task. */
export function guestAppend(task: GuestTask): string {
  const m = task.fetch.match(/^http:\/\/(\d+\.\d+\.\d+\.\d+):(\d+)(\/\S*)?$/);
  if (!m) throw new Error(`the guest fetches only http://IPv4:PORT/PATH URLs, not ${task.fetch}`);
  if (!/^\d+\.\d+\.\d+\.\d+:\d+$/.test(task.blocked)) throw new Error(`blocked: ${task.blocked}`);
  const words = ['quiet', `guest.fetch=${m[1]}:${m[2]}${m[3] ?? '/'}`, `guest.blocked=${task.blocked}`];
  if (task.lookup) words.push(`guest.lookup=${task.lookup}`);
  if (task.fetch6) {
    const v6 = task.fetch6.match(/^http:\/\/\[([0-9a-fA-F:]+)\]:(\d+)(\/\S*)?$/);
    if (!v6) throw new Error(`fetch6 takes only http://[IPv6]:PORT/PATH URLs, not ${task.fetch6}`);
    words.push(`guest.fetch6=${v6[1]},${v6[2]},${v6[3] ?? '/'}`);
  }
  return words.join(' ');
}

/** What the guest said on its console. Fields are undefined when the guest did not get to say them. */
export interface GuestReport {
  release?: string;
  lease?: string;
  router?: string;
  http?: string;
  sha256?: string;
  bytes?: number;
  dns?: string;
  blocked?: string;
  /** The global IPv6 address SLAAC gave eth0 ("ADDR/LEN", every group written out), and the IPv6 default router. */
  address6?: string;
  router6?: string;
  /** The IPv6 fetch's status line, length and sha256. */
  http6?: string;
  bytes6?: number;
  sha256v6?: string;
  done: boolean;
  /** Lines that report a failure ("GUEST INSMOD-FAILED ...", "GUEST NO-ETH0", "GUEST TIMEOUT", ...). */
  failures: string[];
}

/** Reads the "GUEST ..." lines out of a serial console's text (kernel messages may sit in between). */
export function parseConsole(text: string): GuestReport {
  const r: GuestReport = { done: false, failures: [] };
  for (const raw of text.split(/\r?\n/)) {
    const at = raw.indexOf('GUEST ');
    if (at < 0) continue;
    const [word, ...rest] = raw
      .slice(at + 6)
      .trim()
      .split(/\s+/);
    switch (word) {
      case 'BOOT':
        r.release = rest[0];
        break;
      case 'LEASE':
        r.lease = rest[0];
        break;
      case 'ROUTER':
        r.router = rest[0];
        break;
      case 'HTTP':
        r.http = rest.join(' ');
        break;
      case 'SHA256':
        r.sha256 = rest[0];
        break;
      case 'BYTES':
        r.bytes = Number(rest[0]);
        break;
      case 'DNS':
        r.dns = rest[0];
        break;
      case 'BLOCKED':
        r.blocked = rest.join(' ');
        break;
      case 'ADDR6':
        r.address6 = rest[0];
        break;
      case 'ROUTER6':
        r.router6 = rest[0];
        break;
      case 'HTTP-V6':
        r.http6 = rest.join(' ');
        break;
      case 'BYTES-V6':
        r.bytes6 = Number(rest[0]);
        break;
      case 'SHA256-V6':
        r.sha256v6 = rest[0];
        break;
      case 'DONE':
        r.done = true;
        break;
      case 'SAYS':
        break;
      default:
        r.failures.push(raw.slice(at).trim());
    }
  }
  return r;
}

// The guest's /init. @MODULES@ is replaced at build time by the modules to load, in order.
const INIT = `#!/bin/sh
# softnet's test guest. Says what happens in console lines starting with "GUEST ", then powers off.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
/bin/busybox --install -s
mount -t devtmpfs dev /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sys /sys
mkdir -p /tmp /etc
say() { echo "GUEST $*"; }
finish() { say DONE; sync; sleep 1; poweroff -f; }
# Whatever hangs, the guest still ends.
( sleep 240; say TIMEOUT; poweroff -f ) &
say BOOT "$(uname -r)"

FETCH=; BLOCKED=; LOOKUP=; FETCH6=
for w in $(cat /proc/cmdline); do
  case "$w" in
    guest.fetch=*) FETCH=\${w#*=} ;;
    guest.blocked=*) BLOCKED=\${w#*=} ;;
    guest.lookup=*) LOOKUP=\${w#*=} ;;
    guest.fetch6=*) FETCH6=\${w#*=} ;;
  esac
done

for m in @MODULES@; do
  insmod /lib/modules/$m.ko || say INSMOD-FAILED $m
done
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
[ -e /sys/class/net/eth0 ] || { say NO-ETH0 "$(ls /sys/class/net)"; finish; }
ip link set lo up
if [ -n "$FETCH6" ]; then
  # SLAAC from the first advertisement on: set before the link is up, so its first solicitation counts.
  echo 1 > /proc/sys/net/ipv6/conf/eth0/accept_ra && echo 1 > /proc/sys/net/ipv6/conf/eth0/autoconf \\
    || say NO-IPV6-SYSCTL
fi
ip link set eth0 up

udhcpc -i eth0 -q -n -t 5 -s /etc/udhcpc.script
[ -s /tmp/lease ] || { say NO-LEASE; finish; }
read ip mask router lease dns < /tmp/lease
say LEASE $ip/$mask lease $lease
say ROUTER $router dns $dns

CR=$(printf '\\r')
# Reads the response's header lines into /tmp/headers and leaves the body on stdin (ash reads a pipe
# one byte at a time, so nothing of the body is lost to the loop).
headers() {
  : > /tmp/headers
  while IFS= read -r l; do
    l=\${l%"$CR"}
    [ -z "$l" ] && return 0
    echo "$l" >> /tmp/headers
  done
}
# fetch HOST PORT PATH SUFFIX HOSTHEADER: GETs the path, says its status line, length and sha256 under
# HTTP, BYTES and SHA256 followed by SUFFIX.
fetch() {
  rm -f /tmp/count
  mkfifo /tmp/count
  wc -c < /tmp/count > /tmp/bytes &
  counter=$!
  printf 'GET %s HTTP/1.0\\r\\nHost: %s\\r\\nConnection: close\\r\\n\\r\\n' "$3" "$5" \\
    | timeout 150 nc -w 10 "$1" "$2" | { headers; cat; } | tee /tmp/count | sha256sum > /tmp/sum
  wait $counter
  say HTTP$4 "$(head -n 1 /tmp/headers)"
  say BYTES$4 "$(cat /tmp/bytes)"
  say SHA256$4 "$(cut -d ' ' -f 1 /tmp/sum)"
}
# An IPv6 address of /proc/net as the usual colon-separated text (every group written out).
colons() { echo "$1" | sed 's/\\(....\\)/\\1:/g; s/:$//'; }
# The global, usable (not tentative, DAD not failed) IPv6 address of eth0 as ADDR/LEN, if it has one.
global6() {
  while read a idx plen scope flags dev; do
    [ "$dev" = eth0 ] && [ "$scope" = 00 ] && [ $((0x$flags & 0x48)) -eq 0 ] \\
      && { echo "$(colons $a)/$((0x$plen))"; return 0; }
  done < /proc/net/if_inet6
  return 1
}
# The next hop of eth0's IPv6 default route.
router6() {
  while read dst dlen src slen hop rest; do
    set -- $rest
    [ "$dst$dlen" = 0000000000000000000000000000000000 ] && [ "$5" = eth0 ] && { colons $hop; return 0; }
  done < /proc/net/ipv6_route
  return 1
}

if [ -n "$FETCH" ]; then
  host=\${FETCH%%:*}; rest=\${FETCH#*:}; port=\${rest%%/*}; path=/\${rest#*/}
  fetch "$host" "$port" "$path" "" "$host"
fi

if [ -n "$FETCH6" ]; then
  i=0
  while ! global6 > /dev/null && [ $i -lt 300 ]; do sleep 0.2; i=$((i + 1)); done
  if addr6=$(global6); then
    say ADDR6 $addr6
    i=0
    while ! router6 > /dev/null && [ $i -lt 100 ]; do sleep 0.2; i=$((i + 1)); done
    say ROUTER6 $(router6 || echo none)
    host6=\${FETCH6%%,*}; rest=\${FETCH6#*,}; port6=\${rest%%,*}; path6=\${rest#*,}
    fetch "$host6" "$port6" "$path6" -V6 "[$host6]"
  else
    say NO-ADDR6 $(tr '\\n' ' ' < /proc/net/if_inet6)
  fi
fi

if [ -n "$LOOKUP" ]; then
  got=$(timeout 20 nslookup "$LOOKUP" 2>&1)
  addr=$(echo "$got" | awk '/^Name:/ { n = 1 } n && /^Address/ { print $2; exit }')
  if [ -n "$addr" ]; then say DNS $addr; else say DNS-FAILED $(echo "$got" | tr '\\n' ' '); fi
fi

if [ -n "$BLOCKED" ]; then
  bhost=\${BLOCKED%%:*}; bport=\${BLOCKED#*:}
  if printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout 20 nc -w 3 "$bhost" "$bport" > /tmp/blocked 2>&1; then
    say BLOCKED FAILED: connected to $bhost:$bport: $(head -c 100 /tmp/blocked | tr '\\r\\n' '  ')
  else
    say BLOCKED ok
    say SAYS nc to $bhost:$bport: $(head -c 100 /tmp/blocked | tr '\\r\\n' '  ')
  fi
fi
finish
`;

// udhcpc's event script: configures what the lease says and writes it to /tmp/lease for /init.
const UDHCPC_SCRIPT = `#!/bin/sh
case "$1" in
  deconfig)
    ip addr flush dev "$interface"
    ip link set "$interface" up
    ;;
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/\${mask:-24}" dev "$interface"
    [ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
    for r in $router; do ip route add default via "$r" dev "$interface"; break; done
    : > /etc/resolv.conf
    for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done
    echo "$ip \${mask:-24} \${router%% *} \${lease:-0} $dns" > /tmp/lease
    ;;
esac
exit 0
`;

async function sh(script: string, args: string[] = [], timeoutMs = 300_000): Promise<string> {
  try {
    const r = await run('bash', ['-o', 'pipefail', '-c', script, 'sh', ...args], {
      timeout: timeoutMs,
      killSignal: 'SIGKILL',
      maxBuffer: 16 << 20,
    });
    return r.stdout;
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`${script} ${args.join(' ')}: ${err.stderr?.trim() || err.message}`);
  }
}

/** The candidate versions apt has for `pkgs` (a package apt does not know is left out). */
async function candidates(pkgs: string[]): Promise<Map<string, string>> {
  const out = await sh('apt-cache policy "$@" 2>/dev/null || true', pkgs);
  const found = new Map<string, string>();
  // One section per package: "NAME:" at the start of a line, then "  Candidate: VERSION".
  for (const m of out.matchAll(/^(\S+):\n(?:[ \t].*\n)*?\s+Candidate:\s*(\S+)/gm)) {
    if (m[2] !== '(none)') found.set(m[1], m[2]);
  }
  return found;
}

/** The real kernel package behind linux-image-amd64, its version and busybox-static's; runs apt-get update once if apt knows none. */
async function resolvePackages(): Promise<{ pkg: string; version: string; busybox: string }> {
  const look = async () => {
    const deps = await sh('apt-cache depends linux-image-amd64 2>/dev/null || true');
    const pkg = deps.match(/Depends:\s*(linux-image-\S+)/)?.[1] ?? '';
    const versions = await candidates(pkg ? [pkg, 'busybox-static'] : ['busybox-static']);
    return { pkg, version: versions.get(pkg) ?? '', busybox: versions.get('busybox-static') ?? '' };
  };
  let r = await look();
  if (!r.pkg || !r.version || !r.busybox) {
    await sh('apt-get update -qq');
    r = await look();
  }
  if (!r.pkg || !r.version) throw new Error('apt knows no linux-image package behind linux-image-amd64');
  if (!r.busybox) throw new Error('apt knows no busybox-static package');
  return r;
}

/** Downloads `pkg=version` into `dir` with apt-get and returns the .deb's path. */
async function download(pkg: string, version: string, dir: string): Promise<string> {
  // apt's sandbox user cannot write into a root-only temporary directory; root does the download.
  await run('apt-get', ['download', '-q', '-o', 'APT::Sandbox::User=root', `${pkg}=${version}`], {
    cwd: dir,
    timeout: 300_000,
    killSignal: 'SIGKILL',
  });
  const deb = readdirSync(dir).find((f) => f.startsWith(`${pkg}_`) && f.endsWith('.deb'));
  if (!deb) throw new Error(`apt-get download ${pkg}=${version} left no .deb in ${dir}`);
  return join(dir, deb);
}

/** Every file under `dir`, as paths relative to it. */
function walk(dir: string, base = dir): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(join(dir, e.name), base) : [relative(base, join(dir, e.name))],
  );
}

/** Writes `file`'s contents to `to`, decompressed when it is a .ko.xz, .ko.zst or .ko.gz (busybox insmod wants plain). */
async function plainModule(file: string, to: string): Promise<void> {
  if (file.endsWith('.ko')) return copyFileSync(file, to);
  if (file.endsWith('.gz')) return writeFileSync(to, gunzipSync(readFileSync(file)));
  if (file.endsWith('.xz')) {
    await sh('if command -v xz >/dev/null; then xz -dc "$1"; else busybox xzcat "$1"; fi > "$2"', [file, to]);
    return;
  }
  if (file.endsWith('.zst')) {
    await sh('zstd -qdc "$1" > "$2"', [file, to]);
    return;
  }
  throw new Error(`${file}: unknown module compression`);
}

/** Renames a finished temporary entry into place; if another process got there first, keeps theirs. */
function publish(tmp: string, final: string): void {
  try {
    renameSync(tmp, final);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    if (!existsSync(final)) throw e;
  }
}

interface KernelEntry {
  dir: string;
  release: string;
  /** The modules to load, in order, each at `${dir}/modules/NAME.ko`. */
  modules: string[];
}

/** Unpacks the kernel and its virtio modules into the cache entry `dir` (made whole or not at all). */
async function kernelEntry(cache: string, pkg: string, version: string): Promise<KernelEntry> {
  const dir = join(cache, `${pkg}_${version.replace(/[^A-Za-z0-9.+~-]/g, '_')}`);
  if (!readEntry(dir)) {
    // Whatever is there is not a whole entry (someone removed files from it): it goes.
    rmSync(dir, { recursive: true, force: true });
    const tmp = mkdtempSync(join(cache, '.kernel-'));
    try {
      const deb = await download(pkg, version, tmp);
      const x = join(tmp, 'x');
      mkdirSync(x);
      const patterns = ['*/vmlinuz-*', '*/modules.builtin', ...MODULES.map((m) => `*/${m}.ko*`)];
      await sh(
        'deb=$1 dest=$2; shift 2; dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$dest" --wildcards "$@"',
        [deb, x, ...patterns],
      );
      const files = walk(x);
      const vmlinuz = files.find((f) => /(^|\/)boot\/vmlinuz-/.test(f));
      if (!vmlinuz) throw new Error(`${pkg} has no boot/vmlinuz-*`);
      const release = vmlinuz.replace(/^.*vmlinuz-/, '');
      const builtinFile = files.find((f) => f.endsWith(`modules/${release}/modules.builtin`));
      const builtin = new Set(
        (builtinFile ? readFileSync(join(x, builtinFile), 'utf8') : '')
          .split('\n')
          .map((l) => l.replace(/^.*\//, '').replace(/\.ko.*$/, ''))
          .filter(Boolean),
      );
      mkdirSync(join(tmp, 'modules'));
      const modules: string[] = [];
      for (const m of MODULES) {
        const file = files.find((f) => new RegExp(`/${m}\\.ko(\\.(xz|zst|gz))?$`).test(f));
        if (!file) {
          if (builtin.has(m)) continue;
          throw new Error(`${pkg} has neither a module ${m} nor ${m} built in`);
        }
        await plainModule(join(x, file), join(tmp, 'modules', `${m}.ko`));
        modules.push(m);
      }
      renameSync(join(x, vmlinuz), join(tmp, 'vmlinuz'));
      rmSync(x, { recursive: true, force: true });
      rmSync(deb, { force: true });
      writeFileSync(join(tmp, 'entry.json'), JSON.stringify({ release, modules }));
      chmodSync(tmp, 0o755);
      publish(tmp, dir);
    } catch (e) {
      rmSync(tmp, { recursive: true, force: true });
      throw e;
    }
  }
  const entry = readEntry(dir);
  if (!entry) throw new Error(`${dir}: the kernel's cache entry is not whole right after it was made`);
  return entry;
}

/** The cache entry in `dir` if it is whole: its description, the kernel and every module it names. */
function readEntry(dir: string): KernelEntry | null {
  try {
    const { release, modules } = JSON.parse(readFileSync(join(dir, 'entry.json'), 'utf8')) as KernelEntry;
    const files = ['vmlinuz', ...modules.map((m) => `modules/${m}.ko`)];
    return files.every((f) => existsSync(join(dir, f))) ? { dir, release, modules } : null;
  } catch {
    return null;
  }
}

/** Unpacks busybox-static's binary into the cache. */
async function busyboxEntry(cache: string, version: string): Promise<string> {
  const dir = join(cache, `busybox-static_${version.replace(/[^A-Za-z0-9.+~-]/g, '_')}`);
  const bin = join(dir, 'busybox');
  if (!existsSync(bin)) {
    rmSync(dir, { recursive: true, force: true });
    const tmp = mkdtempSync(join(cache, '.busybox-'));
    try {
      const deb = await download('busybox-static', version, tmp);
      await sh('dpkg-deb --fsys-tarfile "$1" | tar -x -O --wildcards "*/bin/busybox" > "$2"', [
        deb,
        join(tmp, 'busybox'),
      ]);
      chmodSync(join(tmp, 'busybox'), 0o755);
      rmSync(deb, { force: true });
      chmodSync(tmp, 0o755);
      publish(tmp, dir);
    } catch (e) {
      rmSync(tmp, { recursive: true, force: true });
      throw e;
    }
  }
  return bin;
}

/** Packs the initramfs (newc cpio, gzip) for `kernel` with `busybox` into `out`, atomically. */
async function packInitrd(cache: string, kernel: KernelEntry, busybox: string, out: string): Promise<void> {
  const tmp = mkdtempSync(join(cache, '.initrd-'));
  try {
    const root = join(tmp, 'root');
    for (const d of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'dev', 'proc', 'sys', 'tmp', 'etc', 'lib/modules'])
      mkdirSync(join(root, d), { recursive: true });
    copyFileSync(busybox, join(root, 'bin/busybox'));
    chmodSync(join(root, 'bin/busybox'), 0o755);
    symlinkSync('busybox', join(root, 'bin/sh'));
    for (const m of kernel.modules)
      copyFileSync(join(kernel.dir, 'modules', `${m}.ko`), join(root, 'lib/modules', `${m}.ko`));
    writeFileSync(join(root, 'init'), INIT.replace('@MODULES@', kernel.modules.join(' ')), { mode: 0o755 });
    writeFileSync(join(root, 'etc/udhcpc.script'), UDHCPC_SCRIPT, { mode: 0o755 });
    // The kernel opens /dev/console for init before anything is mounted; /init copes if it is missing.
    await sh('mknod -m 600 "$1/dev/console" c 5 1 && mknod -m 666 "$1/dev/null" c 1 3 || true', [root]);
    const img = join(tmp, 'initrd.img');
    await sh('cd "$1" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -9n > "$2"', [
      root,
      img,
    ]);
    chmodSync(img, 0o644);
    publish(img, out);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** Removes cache entries of other kernel and busybox versions than the ones in use. */
function prune(cache: string, keep: string[]): void {
  for (const name of readdirSync(cache)) {
    const path = join(cache, name);
    if (keep.includes(path)) continue;
    if (/^(linux-image-|busybox-static_)/.test(name)) rmSync(path, { recursive: true, force: true });
    // What a killed build left half made (an hour leaves any running build alone).
    else if (/^\.(kernel|busybox|initrd)-/.test(name) && Date.now() - statSync(path).mtimeMs > 3600_000)
      rmSync(path, { recursive: true, force: true });
  }
}

/**
 * The guest image for the kernel Debian's linux-image-amd64 currently depends on, from the cache when it
 * is there, else built (about 70 MB downloaded once per kernel version).
 */
export async function buildGuest(
  cache = process.env.SOFTNET_GUEST_CACHE || DEFAULT_CACHE,
): Promise<GuestImage> {
  const started = Date.now();
  mkdirSync(cache, { recursive: true });
  const { pkg, version, busybox: bbVersion } = await resolvePackages();
  const kernelDir = join(cache, `${pkg}_${version.replace(/[^A-Za-z0-9.+~-]/g, '_')}`);
  const hadKernel = readEntry(kernelDir) !== null;
  const kernel = await kernelEntry(cache, pkg, version);
  const busybox = await busyboxEntry(cache, bbVersion);
  // The initramfs is named after everything that goes into it, so a changed /init is a new image.
  const key = createHash('sha256')
    .update([bbVersion, kernel.modules.join(','), INIT, UDHCPC_SCRIPT].join('\0'))
    .digest('hex')
    .slice(0, 16);
  const initrd = join(kernel.dir, `initrd-${key}.img`);
  const hadInitrd = existsSync(initrd);
  if (!hadInitrd) {
    await packInitrd(cache, kernel, busybox, initrd);
    for (const f of readdirSync(kernel.dir))
      if (/^initrd-.*\.img$/.test(f) && join(kernel.dir, f) !== initrd)
        rmSync(join(kernel.dir, f), { force: true });
  }
  prune(cache, [kernel.dir, join(busybox, '..')]);
  return {
    kernel: join(kernel.dir, 'vmlinuz'),
    initrd,
    kernelPackage: pkg,
    kernelVersion: version,
    release: kernel.release,
    modules: kernel.modules,
    cached: hadKernel && hadInitrd,
    ms: Date.now() - started,
  };
}

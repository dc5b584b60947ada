// Every command of `softnet` and `vmtool`, and every flag each takes, as tables: the parser reads them
// (flags.ts), `--help` prints them (usage.ts), and tests hold the man pages (man/) and the bash completion
// (completions/softnet.bash) to them, so none of these can name a flag the others do not know. This module
// loads nothing else, so `--help` starts no engine.

import type { Command, Flag } from './flags.js';

const PORT = 'VM port (exactly one)';
const VM = 'the VM';
const NET = 'the network';
const ENGINE = 'the engine';

/** Last on sudo's probe's command line (sudo.ts): softnet only says whether it can open networks (exit 0). */
export const PROBE_FLAG = '--sudo-escalation-probing';

/** -h, --help: taken by every command (the parser answers it), listed in each usage. */
export const HELP: Flag = { name: '--help', aliases: ['-h'], help: 'print this usage and exit' };

/** --version: taken by `softnet` and `vmtool` themselves, not by their commands. */
export const VERSION_FLAG: Flag = { name: '--version', help: 'print the version and exit' };

const CONTROL_SOCKET: Flag = {
  name: '--control-socket',
  value: 'PATH',
  help: "the engine's control socket (default /run/softnet/control.sock)",
};
const JSON_OUT: Flag = { name: '--json', help: 'print JSON instead of a table' };

/** The flags that shape a network, as the per-VM form and `serve` spell them. */
const NETWORK_FLAGS: Flag[] = [
  {
    name: '--subnet',
    value: 'CIDR',
    help: 'the subnet, /16 to /29; the gateway is its first address (default 192.168.64.0/24)',
  },
  { name: '--dhcp-range', value: 'A-B', help: 'the DHCP pool (default every address after the gateway)' },
  {
    name: '--lease-time',
    value: 'SECONDS',
    aliases: ['--bootpd-lease-time'],
    help: 'DHCP lease time (default 600)',
  },
  {
    name: '--host-link',
    value: 'NAME',
    help: 'the TAP on the host carrying the gateway address (default softnet0)',
  },
  { name: '--mtu', value: 'N', help: 'the MTU told to VMs, 576 to 2000 (default 1500)' },
  { name: '--domain', value: 'NAME', help: 'the domain name told to VMs by DHCP' },
  {
    name: '--dhcp-route',
    value: 'CIDR,...',
    help: 'routes via the gateway, told by DHCP option 121 (at most 32)',
  },
  { name: '--uplink', value: 'IFACE', help: "the NAT uplink (default the default route's interface)" },
  { name: '--nat-ports', value: 'A-B', help: 'the NAT port range on the uplink (default 61000-64999)' },
  {
    name: '--nat-flows-per-vm',
    value: 'N',
    help: 'NAT mappings a VM may hold per protocol (default a quarter of the range)',
  },
  { name: '--ipv6', value: 'on|off', help: 'whether VMs get IPv6, a /64 each (default on)' },
  {
    name: '--ipv6-prefix',
    value: 'PREFIX',
    help: "the ULA /48 the VMs' /64s come from (default a random one, kept)",
  },
  {
    name: '--ipv6-only',
    help: 'VMs get no IPv4 at all and reach IPv4 servers through NAT64 and DNS64 (implies --nat64)',
  },
  { name: '--nat64', help: 'VMs reach IPv4 servers from IPv6 too: NAT64, DNS64, PREF64' },
  { name: '--nat64-prefix', value: 'PREFIX', help: 'the NAT64 /96 (default the well-known 64:ff9b::/96)' },
].map((f) => ({ ...f, group: NET }));

/** The flags of how an engine runs, shared by the per-VM form and `serve`. */
const ENGINE_FLAGS: Flag[] = [
  {
    name: '--state-dir',
    value: 'DIR',
    help: 'where leases, attachments and NAT flows are kept (default /var/lib/softnet)',
  },
  CONTROL_SOCKET,
  {
    name: '--reattach-grace',
    value: 'SECONDS',
    help: 'how long a new engine waits for the VMs of an earlier one to come back (default 30)',
  },
  {
    name: '--user',
    value: 'USER',
    help: 'drop to this user once set up, keeping three capabilities (with --group)',
  },
  { name: '--group', value: 'GROUP', help: 'drop to this group once set up (with --user)' },
  { name: '--log-format', value: 'text|json', help: 'key=value text lines (default) or JSON lines' },
  {
    name: '--metrics',
    value: 'ADDR:PORT',
    help: 'serve Prometheus metrics here ([IPv6]:PORT and :PORT too)',
  },
].map((f) => ({ ...f, group: ENGINE }));

/** `softnet serve`: the engine as a service. */
export const SERVE: Command = {
  name: 'softnet serve',
  synopsis: '[--config FILE] [--control-group GROUP] [FLAG]...',
  summary:
    'Runs the engine as a service: named networks (default from these flags, those of the config file, ' +
    'those added with softnet network add), the control socket, until SIGTERM; SIGHUP reloads the config.',
  flags: [
    {
      name: '--config',
      value: 'FILE',
      help: 'a JSON file of networks: {"networks": [{"name": ..., "cidr": ...}]}',
    },
    {
      name: '--control-group',
      value: 'GROUP',
      help: 'the group owning the control socket (mode 0660): its members run the commands',
    },
    ...ENGINE_FLAGS,
    ...NETWORK_FLAGS.map((f) => ({ ...f, group: 'the default network' })),
    HELP,
  ],
};

/** The flags of `network add` beside the name: a network's fields, as `network add` spells them. */
const ADD_FLAGS: Flag[] = [
  { name: '--cidr', value: 'CIDR', help: 'the subnet, /16 to /29 (required unless --type bridge)' },
  { name: '--type', value: 'shared|host|bridge', help: 'what its VMs reach (default shared)' },
  { name: '--dhcp-range', value: 'A-B', help: 'the DHCP pool (default every address after the gateway)' },
  { name: '--host-link', value: 'NAME', help: 'its host link (default sn-NAME)' },
  { name: '--lease-time', value: 'SECONDS', help: 'DHCP lease time (default 600)' },
  { name: '--mtu', value: 'N', help: 'the MTU told to VMs (default 1500)' },
  { name: '--domain', value: 'NAME', help: 'the domain name told to VMs by DHCP' },
  { name: '--dhcp-route', value: 'CIDR,...', help: 'routes via the gateway, told by DHCP option 121' },
  { name: '--uplink', value: 'IFACE', help: "the NAT uplink (default the default route's interface)" },
  { name: '--nat-ports', value: 'A-B', help: 'the NAT port range (default 61000-64999)' },
  { name: '--nat-flows-per-vm', value: 'N', help: 'NAT mappings a VM may hold per protocol' },
  { name: '--ipv6', value: 'on|off', help: 'whether VMs get IPv6, a /64 each (default on)' },
  {
    name: '--ipv6-prefix',
    value: 'PREFIX',
    help: "the ULA /48 the VMs' /64s come from (default random, kept)",
  },
  { name: '--ipv6-only', help: 'VMs get no IPv4; IPv4 servers through NAT64 and DNS64 (implies --nat64)' },
  { name: '--nat64', help: 'VMs reach IPv4 servers from IPv6 too: NAT64, DNS64, PREF64' },
  { name: '--nat64-prefix', value: 'PREFIX', help: 'the NAT64 /96 (default 64:ff9b::/96)' },
  { name: '--bridge-interface', value: 'IFACE', help: 'for --type bridge: the interface whose LAN VMs join' },
];

/** `softnet network ...`: the operator's commands on the engine's networks. */
export const NETWORK_ADD: Command = {
  name: 'softnet network add',
  synopsis: 'NAME (--cidr CIDR | --type bridge --bridge-interface IFACE) [FLAG]...',
  summary: 'Adds a network to the running engine; it is kept in the state directory.',
  flags: [...ADD_FLAGS, CONTROL_SOCKET, JSON_OUT, HELP],
  words: 1,
};
export const NETWORK_LS: Command = {
  name: 'softnet network ls',
  aliases: ['list'],
  synopsis: '[--json] [--control-socket PATH]',
  summary: "Lists the engine's networks: type, subnet, gateway, pool, host link, uplink, VMs.",
  flags: [CONTROL_SOCKET, JSON_OUT, HELP],
};
export const NETWORK_RM: Command = {
  name: 'softnet network rm',
  aliases: ['remove'],
  synopsis: 'NAME [--json] [--control-socket PATH]',
  summary: 'Removes a network added with network add.',
  flags: [CONTROL_SOCKET, JSON_OUT, HELP],
  words: 1,
};
export const NETWORK_LIST_ATTACHED: Command = {
  name: 'softnet network list-attached',
  synopsis: 'NAME [--json] [--control-socket PATH]',
  summary: "Lists a network's VMs: name, internal and external MAC, address, lease expiry, host device.",
  flags: [CONTROL_SOCKET, JSON_OUT, HELP],
  words: 1,
};
export const NETWORK_RESERVE: Command = {
  name: 'softnet network reserve',
  synopsis: 'NAME MAC IP [--json] [--control-socket PATH]',
  summary: 'Reserves IP on network NAME for the VM with MAC: it gets it by DHCP, or may use it statically.',
  flags: [CONTROL_SOCKET, JSON_OUT, HELP],
  words: 3,
};
export const NETWORK: Command = {
  name: 'softnet network',
  synopsis: 'add|ls|rm|list-attached|reserve ...   (softnet network SUBCOMMAND --help)',
  summary: "Manages the running engine's networks through its control socket.",
  flags: [HELP],
  subcommands: [NETWORK_ADD, NETWORK_LS, NETWORK_RM, NETWORK_LIST_ATTACHED, NETWORK_RESERVE],
};

/** `softnet show VM`. */
export const SHOW: Command = {
  name: 'softnet show',
  synopsis: 'VM [--json] [--control-socket PATH]',
  summary: 'Shows one VM (by name, MAC, external MAC or address): type, address, MACs, forwards, counters.',
  flags: [CONTROL_SOCKET, JSON_OUT, HELP],
  words: 1,
};

/** `softnet capture VM`. */
export const CAPTURE: Command = {
  name: 'softnet capture',
  synopsis: 'VM -w FILE|- [-c COUNT] [--control-socket PATH]',
  summary:
    "Writes one VM's frames, as the VM sees them, as a pcap file (- for stdout) until SIGINT or COUNT.",
  flags: [
    { name: '-w', value: 'FILE', help: 'the pcap file to write, or - for stdout; required' },
    { name: '-c', value: 'COUNT', help: 'stop after COUNT frames' },
    CONTROL_SOCKET,
    HELP,
  ],
  words: 1,
};

/** `softnet demo`. */
export const DEMO: Command = {
  name: 'softnet demo',
  synopsis: '',
  summary:
    'Builds throwaway namespaces (a host, a VM, a world with a web server), gets the VM a lease from ' +
    'softnet, reaches the host and the world through it, and removes everything it made.',
  flags: [HELP],
};

/** The per-VM form: what a VM tool execs for one NIC. */
export const SOFTNET: Command = {
  name: 'softnet',
  synopsis:
    '(--vm-fd N | --vm-tap NAME | --vm-netns PATH | --vm-socket PATH) --vm-mac-address MAC [FLAG]...\n' +
    '       softnet COMMAND [FLAG]...   (softnet COMMAND --help)\n' +
    '       softnet --version',
  summary:
    "Connects one VM's NIC: hands it to the engine at the control socket, or runs the engine itself when " +
    'none answers, and stays while the VM lives. A bad flag gets one line naming it and exit status 2.',
  flags: [
    ...[
      {
        name: '--vm-fd',
        value: 'N',
        help: 'an inherited fd: a unix datagram socket (a frame a datagram) or a TAP',
      },
      { name: '--vm-tap', value: 'NAME', help: 'an existing TAP device' },
      { name: '--vm-netns', value: 'PATH', help: "make the VM's NIC as a TAP inside this network namespace" },
      { name: '--vm-ifname', value: 'NAME', help: 'its name there (default eth0); only with --vm-netns' },
      {
        name: '--vm-socket',
        value: 'PATH',
        help: 'listen on this unix stream socket for QEMU -netdev stream (a 4-byte length before each frame)',
      },
    ].map((f) => ({ ...f, group: PORT })),
    ...[
      { name: '--vm-mac-address', value: 'MAC', help: "the VM's own (internal) MAC; required" },
      {
        name: '--vm-name',
        value: 'NAME',
        help: 'its name in the engine and its lease identity (default its MAC)',
      },
      {
        name: '--vm-external-mac',
        value: 'MAC',
        help: 'the MAC the host sees (default random, locally administered, kept)',
      },
      {
        name: '--vm-net-type',
        value: 'TYPE',
        help: 'shared (default; nat is shared), host, disconnected or bridge',
      },
      { name: '--bridge-interface', value: 'IFACE', help: 'the interface whose LAN a bridge VM joins' },
      {
        name: '--allow',
        value: 'CIDR|@host,...',
        help: 'destinations the VM may reach (longest prefix wins)',
      },
      { name: '--block', value: 'CIDR|@host,...', help: 'destinations it may not reach (block wins a tie)' },
      { name: '--reject', help: 'refuse blocked traffic (TCP RST, ICMP unreachable) instead of dropping it' },
      {
        name: '--expose',
        value: '[BIND:]EXT:INT[/tcp|/udp],...',
        help: 'port forwards from the host to the VM',
      },
      { name: '--dhcp-host', value: 'MAC=IP,...', help: 'reserved addresses on the network' },
    ].map((f) => ({ ...f, group: VM })),
    { name: '--network', value: 'NAME', help: "the engine's network to join (default default)", group: NET },
    ...NETWORK_FLAGS,
    ...ENGINE_FLAGS,
    HELP,
    VERSION_FLAG,
  ],
  subcommands: [SERVE, NETWORK, SHOW, CAPTURE, DEMO],
};

/** `vmtool run`. */
export const VMTOOL_RUN: Command = {
  name: 'vmtool run',
  synopsis: '--net-softnet --kernel FILE --initrd FILE [FLAG]...',
  summary:
    'Boots a VM under QEMU with its NIC on softnet, started as Tart starts it: softnet --vm-fd 3 on one end ' +
    'of a datagram socketpair, QEMU -netdev dgram on the other. Exits with QEMU status.',
  flags: [
    ...[
      { name: '--net-softnet', help: 'the NIC is on softnet (the only network vmtool has); required' },
      { name: '--net-softnet-allow', value: 'CIDR,...', help: "softnet's --allow" },
      { name: '--net-softnet-block', value: 'CIDR,...', help: "softnet's --block" },
      { name: '--net-softnet-expose', value: 'SPEC,...', help: "softnet's --expose" },
      {
        name: '--net-softnet-arg',
        value: 'ARG',
        many: true,
        help: 'one more argument for softnet (repeatable)',
      },
      { name: '--net-softnet-socket', help: 'use a unix stream socket and QEMU -netdev stream instead' },
    ].map((f) => ({ ...f, group: 'the network' })),
    ...[
      { name: '--kernel', value: 'FILE', help: 'the kernel to boot; required' },
      { name: '--initrd', value: 'FILE', help: 'its initramfs; required' },
      { name: '--append', value: 'ARGS', help: 'more kernel command line (after console=ttyS0 panic=-1)' },
      { name: '--mac', value: 'MAC', help: "the NIC's MAC (default 52:54:00 and three random bytes)" },
      { name: '--memory', value: 'MB', help: 'memory (default 256)' },
      {
        name: '--accel',
        value: 'kvm|tcg',
        help: "the accelerator (default kvm on an Intel or AMD host's KVM, else tcg)",
      },
    ].map((f) => ({ ...f, group: 'the VM' })),
    HELP,
  ],
};

/** `vmtool`: its one command is run. */
export const VMTOOL: Command = {
  name: 'vmtool',
  synopsis: 'run [FLAG]...   (vmtool run --help)\n       vmtool --version',
  summary: 'A small QEMU launcher that starts softnet exactly as Tart does.',
  flags: [HELP, VERSION_FLAG],
  subcommands: [VMTOOL_RUN],
};

/** Every command, for the tests that hold the man pages and the completion to the parser. */
export const ALL_COMMANDS: readonly Command[] = [SOFTNET, VMTOOL].flatMap(function all(
  c: Command,
): Command[] {
  return [c, ...(c.subcommands ?? []).flatMap(all)];
});

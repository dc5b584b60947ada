// The operator's commands: `softnet network ...` and `softnet show VM`. Each asks the engine at the
// control socket one question and prints the answer as a table, or as JSON with --json.

import { connectEngine } from '../control/client.js';
import { ControlError, type Message } from '../control/protocol.js';
import { UsageError } from '../engine/errors.js';
import { ADD_FLAG } from '../engine/service.js';
import { engineSettings } from './args.js';
import type { Command, Given } from './flags.js';
import {
  NETWORK_ADD,
  NETWORK_LIST_ATTACHED,
  NETWORK_LS,
  NETWORK_RESERVE,
  NETWORK_RM,
  SHOW,
} from './grammar.js';

/** Lines of a table: a header and rows, each column as wide as its widest cell. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  return `${[line(header), ...rows.map(line)].join('\n')}\n`;
}

const text = (v: unknown) => (v === null || v === undefined || v === '' ? '-' : String(v));

/** Asks the engine at `path` one request; rejects with ControlError when it refuses or is not there. */
async function ask(path: string, op: string, args: Message = {}): Promise<Message> {
  const ch = connectEngine(path, { message() {}, closed() {} });
  if (!ch) throw new ControlError(`no softnet engine runs at ${path}`);
  try {
    return await ch.request(op, args);
  } finally {
    ch.close();
  }
}

function print(json: boolean, data: unknown, render: () => string): void {
  process.stdout.write(json ? `${JSON.stringify(data, null, 2)}\n` : render());
}

/** Runs `softnet network SUB ...` or `softnet show VM`, given its parsed flags; resolves when printed. */
export async function runCommand(command: Command, g: Given): Promise<void> {
  switch (command) {
    case SHOW:
      return show(g);
    case NETWORK_LS: {
      const r = await ask(engineSettings(g.values).controlSocket, 'network.ls');
      const nets = r.networks as Message[];
      return print(g.values.has('--json'), nets, () =>
        table(
          ['NAME', 'TYPE', 'CIDR', 'GATEWAY', 'DHCP RANGE', 'HOST LINK', 'UPLINK', 'VMS'],
          nets.map((n) => [
            text(n.name),
            text(n.type),
            text(n.cidr),
            text(n.gateway),
            text(n.dhcpRange),
            text(n.hostLink),
            n.natPorts ? natText(n) : '-',
            text(n.vms),
          ]),
        ),
      );
    }
    case NETWORK_LIST_ATTACHED: {
      if (g.words.length !== 1) throw new UsageError('NAME', 'list-attached needs a network name');
      const r = await ask(engineSettings(g.values).controlSocket, 'network.attached', { name: g.words[0] });
      const vms = r.vms as Message[];
      return print(g.values.has('--json'), vms, () =>
        table(
          ['VM', 'INTERNAL MAC', 'EXTERNAL MAC', 'IP', 'IPV6 PREFIX', 'LEASE EXPIRY', 'HOST DEVICE'],
          vms.map((v) => [
            text(v.vm),
            text(v.mac),
            text(v.externalMac),
            text(v.ip),
            text(v.ipv6Prefix),
            text(v.leaseExpires),
            text(v.hostDevice),
          ]),
        ),
      );
    }
    case NETWORK_ADD: {
      if (g.words.length !== 1) throw new UsageError('NAME', 'network add needs a name');
      // A bridge network's addresses are its LAN's.
      if (!g.values.has('--cidr') && g.values.get('--type') !== 'bridge')
        throw new UsageError('--cidr', 'is required');
      const spec: Message = { name: g.words[0] };
      for (const [field, flag] of Object.entries(ADD_FLAG)) {
        const v = g.values.get(flag);
        if (v !== undefined) spec[field] = v;
      }
      const net = await ask(engineSettings(g.values).controlSocket, 'network.add', { spec });
      return print(
        g.values.has('--json'),
        net,
        () => `network ${text(net.name)} added: ${text(net.cidr)} on ${text(net.hostLink)}\n`,
      );
    }
    case NETWORK_RM: {
      if (g.words.length !== 1) throw new UsageError('NAME', 'network rm needs a name');
      await ask(engineSettings(g.values).controlSocket, 'network.rm', { name: g.words[0] });
      return print(g.values.has('--json'), { removed: g.words[0] }, () => `network ${g.words[0]} removed\n`);
    }
    case NETWORK_RESERVE: {
      if (g.words.length !== 3) throw new UsageError('NAME', 'network reserve needs NAME MAC IP');
      const [name, mac, ip] = g.words;
      await ask(engineSettings(g.values).controlSocket, 'network.reserve', { name, mac, ip });
      return print(
        g.values.has('--json'),
        { network: name, mac, ip },
        () => `${ip} reserved for ${mac} on ${name}\n`,
      );
    }
    default:
      throw new Error(`runCommand: not an operator command: ${command.name}`);
  }
}

/** Where a network's NAT leaves now (interface, address, ports), and why not when it is on hold. */
function natText(m: Message): string {
  const at = `${text(m.uplink)} ${text(m.natAddress)} ${text(m.natPorts)}`;
  return m.natHeld ? `${at}, on hold: ${text(m.natHeld)}` : at;
}

async function show(g: Given): Promise<void> {
  if (g.words.length !== 1) throw new UsageError('VM', 'show needs a VM (its name, MAC or address)');
  const v = await ask(engineSettings(g.values).controlSocket, 'show', { vm: g.words[0] });
  print(g.values.has('--json'), v, () => {
    const c = v.counters as Record<string, number>;
    const rows: Array<[string, string]> = [
      ['vm', text(v.vm)],
      ['network', text(v.network)],
      ['type', text(v.type)],
      ['ip', text(v.ip)],
      ['lease expires', text(v.leaseExpires)],
      ['ipv6 prefix', text(v.ipv6Prefix)],
      ['ipv6 addresses', (v.ipv6Addresses as string[] | undefined)?.join(', ') || '-'],
      ['internal mac', text(v.mac)],
      ['external mac', text(v.externalMac)],
      ['host device', text(v.hostDevice)],
      ['port', text(v.port)],
      ['forwards', (v.forwards as string[]).join(', ') || '-'],
      ['allow', (v.allow as string[]).join(', ') || '-'],
      ['block', (v.block as string[]).join(', ') || '-'],
      ['nat', v.natPorts ? natText(v) : '-'],
      ['nat mappings', text(v.natMappings)],
      [
        'nat66',
        !v.natPorts
          ? '-'
          : v.natAddress6
            ? `${text(v.natAddress6)}, ${text(v.nat66Mappings)} mappings`
            : `on hold: ${text(v.nat6Held)}`,
      ],
      ['state', v.statePersisted === false ? `not persisted (${text(v.stateError)})` : 'persisted'],
      ['frames from vm', `${c.rx_frames} (${c.rx_bytes} bytes)`],
      ['frames to vm', `${c.tx_frames} (${c.tx_bytes} bytes, ${c.tx_drops} dropped)`],
      ['per-vm process', text(v.pid)],
      ['attached since', text(v.since)],
      ['degraded', (v.degraded as string[] | undefined)?.join(', ') || '-'],
    ];
    return rows.map(([k, val]) => `${`${k}:`.padEnd(16)}${val}\n`).join('');
  });
}

/*
 * `softnet serve`: an engine that stays, whatever VMs come and go, with declared networks.
 *
 * Theory of operation
 * - Its networks: `default`, made from its own flags; those of its config file (--config, JSON:
 *   {"networks": [{name, cidr, ...}]}); and those added at run time with `softnet network add`, kept in
 *   STATE_DIR/networks.json. Reservations made with `softnet network reserve` are kept in
 *   STATE_DIR/reservations.json, by network, and applied whenever that network opens.
 * - Two networks never share a name, a host link or an address: subnets that overlap are refused.
 * - SIGHUP reads the config file again: networks it gained open, networks it lost close if no VM is
 *   attached to them (else they stay, with a warning, until the next reload).
 * - A bad config file is the operator's: a usage error. networks.json and reservations.json are the
 *   engine's own: one that cannot be read is moved aside (StateFiles) and the service starts without
 *   what it held; a saved network that can no longer be opened is logged and left out.
 */

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  checkNetworkSpec,
  DEFAULT_NETWORK,
  FieldError,
  NETWORK_FLAG,
  type NetworkSpec,
} from '../net/network-spec.js';
import { readJsonFile, readOrSetAside } from '../util/json-file.js';
import type { Logger } from '../util/log.js';
import { type StateWriter, stateFiles } from '../util/state-files.js';
import { parseCidr } from '../wire/addr.js';
import type { NetworkAdmin } from './control-api.js';
import type { Engine } from './engine.js';
import { UsageError } from './errors.js';
import type { LiveNetwork } from './live-network.js';

/** The flags of `network add` (and of a config file's network), by the spec field they set. */
export const ADD_FLAG: Record<string, string> = {
  ...NETWORK_FLAG,
  name: 'NAME',
  cidr: '--cidr',
  type: '--type',
};

/** A network added at run time gets host link sn-NAME unless it names one. */
export function addedNetwork(raw: Record<string, unknown>): NetworkSpec {
  const name = typeof raw.name === 'string' ? raw.name : '';
  const base = { ...DEFAULT_NETWORK, hostLink: `sn-${name}`.slice(0, 15) };
  try {
    return checkNetworkSpec(raw, base);
  } catch (e) {
    if (e instanceof FieldError) throw new UsageError(ADD_FLAG[e.field] ?? `--${e.field}`, e.message);
    throw e;
  }
}

/** The service around an engine. */
export class Service implements NetworkAdmin {
  private readonly savedPath: string;
  private readonly reservationsPath: string;
  private readonly savedWriter: StateWriter;
  private readonly reservationsWriter: StateWriter;
  /** Names of the networks that come from the config file, and of those added at run time. */
  private fromConfig = new Set<string>();
  private readonly added = new Map<string, NetworkSpec>();
  private readonly reservations: Record<string, Record<string, string>>;

  constructor(
    private readonly engine: Engine,
    private readonly defaultNetwork: NetworkSpec,
    private readonly configPath: string | null,
    private readonly log: Logger,
  ) {
    this.savedPath = join(engine.opts.stateDir, 'networks.json');
    this.reservationsPath = join(engine.opts.stateDir, 'reservations.json');
    this.savedWriter = stateFiles.writer(this.savedPath);
    this.reservationsWriter = stateFiles.writer(this.reservationsPath);
    this.reservations = readOrSetAside(this.reservationsPath, stateFiles, {}, () => {
      const r = readJsonFile(this.reservationsPath, {});
      if (!isReservations(r)) throw new Error('not a softnet reservations file');
      return r;
    });
  }

  /** Opens the default network, the config file's and the saved ones; throws UsageError naming the flag at fault. */
  async start(): Promise<void> {
    await this.open(this.defaultNetwork);
    for (const spec of this.configNetworks()) {
      await this.open(spec);
      this.fromConfig.add(spec.name);
    }
    const saved = readOrSetAside(this.savedPath, stateFiles, [], () => {
      const list = readJsonFile(this.savedPath, []);
      if (!Array.isArray(list)) throw new Error('not a softnet networks file');
      return list as Array<Record<string, unknown>>;
    });
    for (const raw of saved) {
      try {
        const spec = addedNetwork(raw);
        await this.open(spec);
        this.added.set(spec.name, spec);
      } catch (e) {
        this.log.error('saved network not opened', {
          network: typeof raw?.name === 'string' ? raw.name : undefined,
          error: (e as Error).message,
        });
      }
    }
  }

  private configNetworks(): NetworkSpec[] {
    if (this.configPath === null) return [];
    let data: { networks?: unknown };
    try {
      data = JSON.parse(readFileSync(this.configPath, 'utf8'));
    } catch (e) {
      throw new UsageError('--config', `${this.configPath}: ${(e as Error).message}`);
    }
    if (!Array.isArray(data.networks))
      throw new UsageError('--config', `${this.configPath}: no "networks" list`);
    return data.networks.map((raw, i) => {
      try {
        return addedNetwork(raw as Record<string, unknown>);
      } catch (e) {
        throw new UsageError('--config', `${this.configPath}: network ${i + 1}: ${(e as Error).message}`);
      }
    });
  }

  private async open(spec: NetworkSpec): Promise<LiveNetwork> {
    const c = parseCidr(spec.cidr)!;
    for (const n of this.engine.networks.values()) {
      // A bridge network's addresses are its LAN's, not a subnet of softnet's.
      if (spec.type === 'bridge' || n.spec.type === 'bridge') continue;
      const o = parseCidr(n.spec.cidr)!;
      const mask = (c.mask & o.mask) >>> 0;
      if ((c.addr & mask) >>> 0 === (o.addr & mask) >>> 0)
        throw new UsageError('--cidr', `${spec.cidr} overlaps network ${n.spec.name} (${n.spec.cidr})`);
    }
    const net = await this.engine.declare(spec);
    for (const [mac, ip] of Object.entries(this.reservations[spec.name] ?? {})) {
      try {
        this.engine.reserve(net, mac, ip);
      } catch (e) {
        this.log.warn('reservation not applied', {
          network: spec.name,
          mac,
          ip,
          error: (e as Error).message,
        });
      }
    }
    return net;
  }

  async add(raw: Record<string, unknown>): Promise<LiveNetwork> {
    const spec = addedNetwork(raw);
    if (this.engine.networks.has(spec.name))
      throw new UsageError('NAME', `network ${spec.name} exists already`);
    const net = await this.open(spec);
    this.added.set(spec.name, spec);
    this.saveAdded();
    return net;
  }

  remove(name: string): void {
    if (name === this.defaultNetwork.name)
      throw new UsageError('NAME', 'the default network cannot be removed');
    if (this.fromConfig.has(name)) throw new UsageError('NAME', `network ${name} comes from the config file`);
    this.engine.remove(name);
    this.added.delete(name);
    this.saveAdded();
  }

  reserve(name: string, mac: string, ip: string): void {
    const net = this.engine.networks.get(name);
    if (!net) throw new UsageError('NAME', `no network ${name}`);
    this.engine.reserve(net, mac, ip);
    this.reservations[name] = { ...net.spec.reservations };
    const text = `${JSON.stringify(this.reservations, null, 1)}\n`;
    this.reservationsWriter.save(() => text);
  }

  /** SIGHUP: the config file again; networks it gained open, networks it lost close when idle. */
  async reload(): Promise<void> {
    let specs: NetworkSpec[];
    try {
      specs = this.configNetworks();
    } catch (e) {
      this.log.error('config not reloaded', { error: (e as Error).message });
      return;
    }
    const wanted = new Set(specs.map((s) => s.name));
    for (const name of [...this.fromConfig]) {
      if (wanted.has(name)) continue;
      try {
        this.engine.remove(name);
        this.fromConfig.delete(name);
      } catch (e) {
        this.log.warn('network kept', { network: name, error: (e as Error).message });
      }
    }
    for (const spec of specs) {
      if (this.engine.networks.has(spec.name)) continue;
      try {
        await this.open(spec);
        this.fromConfig.add(spec.name);
      } catch (e) {
        this.log.error('network not opened', { network: spec.name, error: (e as Error).message });
      }
    }
    this.log.info('config reloaded', { networks: this.engine.networks.size });
  }

  private saveAdded(): void {
    const text = `${JSON.stringify([...this.added.values()], null, 1)}\n`;
    this.savedWriter.save(() => text);
  }
}

/** Whether `x` is what reservations.json holds: by network, MAC -> address, all text. */
function isReservations(x: unknown): x is Record<string, Record<string, string>> {
  const isMap = (m: unknown) => typeof m === 'object' && m !== null && !Array.isArray(m);
  return (
    isMap(x) &&
    Object.values(x as object).every(
      (net) => isMap(net) && Object.values(net as object).every((ip) => typeof ip === 'string'),
    )
  );
}

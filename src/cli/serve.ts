// `softnet serve`: the service form. Takes the engine lock, opens its networks, listens on the control
// socket (and on --metrics), and stays until SIGTERM; SIGHUP reloads its config file.

import { readFileSync } from 'node:fs';
import { takeEngineLock } from '../control/server.js';
import { controlHandlers } from '../engine/control-api.js';
import { Engine } from '../engine/engine.js';
import { flagged, UsageError } from '../engine/errors.js';
import { startMetrics } from '../engine/metrics.js';
import { Service } from '../engine/service.js';
import { Logger } from '../util/log.js';
import { engineSettings, networkFromFlags } from './args.js';
import { type Given, pathValue } from './flags.js';
import { ensurePrivileged } from './sudo.js';

/** The gid of a group given by name or number. */
export function groupId(flag: string, name: string): number {
  for (const line of readFileSync('/etc/group', 'utf8').split('\n')) {
    const f = line.split(':');
    if (f[0] === name) return Number(f[2]);
  }
  if (/^\d+$/.test(name)) return Number(name);
  throw new UsageError(flag, `no such group: ${name}`);
}

/**
 * Runs the service, given its parsed flags (grammar.ts: SERVE) and its arguments as typed (for a run again
 * under sudo); rejects with UsageError for a flag whose value cannot be used.
 */
export async function runServe(g: Given, argv: string[]): Promise<void> {
  const settings = engineSettings(g.values);
  const { network } = networkFromFlags(g.values, (f) => g.spelled.get(f) ?? f);
  const group = g.values.get('--control-group');
  const controlGid = group === undefined ? null : groupId('--control-group', group);
  const config = g.values.has('--config') ? pathValue('--config', g.values.get('--config')!) : null;
  ensurePrivileged(['serve', ...argv], settings, null);
  // Set-up's lines are held, so a start that fails prints its one error line and nothing else.
  const held = new Logger(settings.logFormat).held();
  const log = held.log;
  const lock = flagged('--control-socket', () => takeEngineLock(settings.controlSocket));
  if (lock < 0)
    throw new UsageError('--control-socket', `another softnet engine runs at ${settings.controlSocket}`);
  const engine = new Engine(
    {
      stateDir: settings.stateDir,
      controlSocket: settings.controlSocket,
      controlGid,
      service: true,
      graceMs: settings.reattachGrace * 1000,
    },
    log,
    (code) => process.exit(code),
  );
  const service = new Service(engine, network, config, log);
  try {
    await service.start();
    engine.listen(controlHandlers(engine, service));
    // Before dropping privileges, which a port below 1024 needs.
    if (settings.metrics !== null) await startMetrics(engine, settings.metrics, log);
    if (settings.user !== null && settings.group !== null) engine.dropTo(settings.user, settings.group);
  } catch (e) {
    engine.shutdown();
    throw e;
  }
  held.release();
  process.on('SIGINT', () => engine.stop(0));
  process.on('SIGTERM', () => engine.stop(0));
  process.on('SIGUSR1', () => engine.logCounters());
  process.on('SIGHUP', () => {
    service.reload().catch((e) => log.error('reload failed', { error: (e as Error).message }));
  });
  log.info('serving', { control_socket: settings.controlSocket, networks: engine.networks.size });
}

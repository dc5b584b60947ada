// softnet's two clocks. Timeouts (leases, NAT mappings, retries) run on the monotonic one, so that a step of
// the wall clock (NTP, `date -s`) neither ends every lease at once nor keeps them forever. Files and people
// see wall time: a time is converted only as it is written or read.

import { performance } from 'node:perf_hooks';

/** Milliseconds on the monotonic clock (since an arbitrary start; never steps). */
export function monotonicMs(): number {
  return performance.now();
}

/** Whole seconds on the monotonic clock, from 1 (0 stays free to mean "never"). */
export function monotonicSeconds(): number {
  return Math.floor(performance.now() / 1000) + 1;
}

/** A pair of clocks, the real ones unless a test gives its own. */
export interface Clocks {
  /** Monotonic ms. */
  mono(): number;
  /** Wall ms since the epoch. */
  wall(): number;
}

export const REAL_CLOCKS: Clocks = { mono: monotonicMs, wall: () => Date.now() };

/** The monotonic time of wall time `wall` (both ms), as of now. */
export function toMonotonic(wall: number, clocks: Clocks = REAL_CLOCKS): number {
  return wall - clocks.wall() + clocks.mono();
}

/** The wall time of monotonic time `mono` (both ms), as of now. */
export function toWall(mono: number, clocks: Clocks = REAL_CLOCKS): number {
  return mono - clocks.mono() + clocks.wall();
}

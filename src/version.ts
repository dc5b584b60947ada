// softnet's version, as package.json states it: read once, so it is never written twice.

import { readFileSync } from 'node:fs';

/** The version of this build. */
export const VERSION: string = JSON.parse(
  readFileSync(new URL('../../package.json', import.meta.url), 'utf8'),
).version;

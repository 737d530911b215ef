import { createInterface } from 'node:readline';
import { acquireDataDirLock, DataDirInUseError } from '../../src/runtime/data-dir-lock.js';

/*
 * One contender in test/data-dir-lock-race.test.ts: for each `<directory>` line on stdin it tries to take
 * that data directory's lock at once and answers `won` or `lost`. Locks it wins are held until stdin
 * closes, so a winner stays a live holder for the others to see.
 */
const lines = createInterface({ input: process.stdin });
lines.on('line', async (directory) => {
  try {
    await acquireDataDirLock(directory, { command: 'start', publicUrl: 'http://racer' }, 0);
    process.stdout.write('won\n');
  } catch (error) {
    process.stdout.write(error instanceof DataDirInUseError ? 'lost\n' : `error ${String(error)}\n`);
  }
});
lines.on('close', () => process.exit(0));
process.stdout.write('ready\n');

import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface, type Interface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { acquireDataDirLock, lockPath, TakeoverInterruptedError } from '../src/runtime/data-dir-lock.js';

/*
 * Starters racing for one data directory (a supervisor and an operator both running `idsync start`
 * after a crash): exactly one may win, whether the directory has no lock yet or a lock left by a dead
 * owner. Two winners would each start, adopt and later stop the same embedded servers.
 */
const CONTENDERS = 6;
const ROUNDS = 12;

interface Contender {
  child: ChildProcess;
  answers: Interface;
}

/** The lock an `idsync start` killed with -9 leaves behind: its pid is now no process. */
function leaveLockOfDeadOwner(directory: string, pid: number): void {
  const holder = { pid, command: 'start', startedAt: '2026-01-01T00:00:00.000Z', publicUrl: 'x' };
  writeFileSync(lockPath(directory), JSON.stringify(holder));
}

async function startContender(): Promise<Contender> {
  const script = fileURLToPath(new URL('./support/lock-racer.ts', import.meta.url));
  const child = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), script], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const answers = createInterface({ input: child.stdout! });
  const [first] = await once(answers, 'line');
  expect(first).toBe('ready');
  return { child, answers };
}

describe('racing for the data directory lock', async () => {
  const contenders: Contender[] = [];
  afterAll(() => {
    for (const { child } of contenders) child.kill('SIGKILL');
  });

  async function race(directory: string): Promise<string[]> {
    const answered = contenders.map(({ answers }) => once(answers, 'line').then(([line]) => line as string));
    for (const { child } of contenders) child.stdin!.write(`${directory}\n`);
    return Promise.all(answered);
  }

  it('has exactly one winner, on a fresh directory and on one whose owner died', async () => {
    contenders.push(...(await Promise.all(Array.from({ length: CONTENDERS }, startContender))));
    const dead = spawn('true');
    await once(dead, 'exit');
    for (let round = 0; round < ROUNDS; round += 1) {
      const directory = mkdtempSync(path.join(os.tmpdir(), 'idsync-lock-race-'));
      if (round % 2 === 1) {
        leaveLockOfDeadOwner(directory, dead.pid!);
      }
      const answers = await race(directory);
      expect(
        answers.filter((answer) => answer === 'won'),
        `round ${round}: ${answers.join(' ')}`,
      ).toHaveLength(1);
      expect(answers.filter((answer) => answer !== 'won' && answer !== 'lost')).toEqual([]);
      const winner = JSON.parse(readFileSync(lockPath(directory), 'utf8')) as { pid: number };
      expect(contenders.map(({ child }) => child.pid)).toContain(winner.pid);
    }
  });

  it('a takeover whose taker died leaves the lock to the operator, with the file to delete', async () => {
    const directory = mkdtempSync(path.join(os.tmpdir(), 'idsync-lock-race-'));
    const dead = spawn('true');
    await once(dead, 'exit');
    leaveLockOfDeadOwner(directory, dead.pid!);
    writeFileSync(`${lockPath(directory)}.takeover`, String(dead.pid));
    const claim = { command: 'start' as const, publicUrl: 'http://me' };
    const refused = acquireDataDirLock(directory, claim, 0);
    await expect(refused).rejects.toBeInstanceOf(TakeoverInterruptedError);
    await expect(refused).rejects.toThrow(`delete ${lockPath(directory)}.takeover`);
    // A live Node program with the taker's pid (reused), on a marker older than any takeover takes.
    const reused = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60_000)'], { stdio: 'ignore' });
    writeFileSync(`${lockPath(directory)}.takeover`, String(reused.pid));
    const long = new Date(Date.now() - 60_000);
    utimesSync(`${lockPath(directory)}.takeover`, long, long);
    try {
      await expect(acquireDataDirLock(directory, claim, 0)).rejects.toBeInstanceOf(TakeoverInterruptedError);
    } finally {
      reused.kill('SIGKILL');
    }
    rmSync(`${lockPath(directory)}.takeover`);
    const lock = await acquireDataDirLock(directory, claim, 0);
    expect(JSON.parse(readFileSync(lockPath(directory), 'utf8')).pid).toBe(process.pid);
    lock.release();
  });

  it('a lock it cannot read is an error, not a free directory (and no endless retry)', async () => {
    const directory = mkdtempSync(path.join(os.tmpdir(), 'idsync-lock-race-'));
    mkdirSync(lockPath(directory));
    await expect(
      acquireDataDirLock(directory, { command: 'start', publicUrl: 'http://me' }, 0),
    ).rejects.toMatchObject({ code: 'EISDIR' });
  });
});

import { linkSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { isProcessRunning, sleep } from './processes.js';

/*
 * One idsync owns a data directory at a time: the daemon (or, while no daemon runs, a one-shot CLI
 * command) that holds `IDSYNC_DATA_DIR/idsync.lock`. The file says who holds it and where it can be
 * reached — pid, command, public URL, HTTP and embedded server ports — so a second `idsync start`
 * refuses with a message naming the first, one-shot commands use the running daemon's servers and
 * print its public URL, and servers left running are adopted only when the lock's owner is dead.
 *
 * A pid file created with O_EXCL rather than proper-lockfile: that library judges a lock stale by its
 * mtime (it is made for network file systems), so it refuses a restart for seconds after a crash and
 * declares a live daemon's lock compromised when a busy machine stalls its timer. On one machine,
 * whether the owner's process is alive is the exact test.
 *
 * Starters may race (a supervisor and an operator after a crash), so the file is never seen half made
 * and never replaced by two: it appears whole (a complete file hard-linked into place, which fails if
 * one is there), and a dead owner's lock is replaced only by the starter that created the takeover
 * marker, after checking the lock is still the very one it judged dead.
 */

export type LockCommand = 'start' | 'serve' | 'worker' | 'one-shot';

export interface LockHolder {
  pid: number;
  command: LockCommand;
  /** What the one-shot command is (`tenant create`), for the refusal message. */
  detail?: string;
  startedAt: string;
  publicUrl: string;
  httpPort?: number;
  postgresPort?: number;
  redisPort?: number;
}

export class DataDirInUseError extends Error {
  constructor(
    readonly dataDir: string,
    readonly holder: LockHolder,
  ) {
    const what =
      holder.command === 'one-shot' ? `idsync ${holder.detail ?? 'command'}` : `idsync ${holder.command}`;
    const where = holder.command === 'one-shot' ? '' : ` at ${holder.publicUrl}`;
    super(
      `${what} (pid ${holder.pid}${where}, since ${holder.startedAt}) is already running on the data directory ${dataDir}; stop it first (Ctrl-C in its terminal, or kill ${holder.pid}), or set IDSYNC_DATA_DIR to another directory`,
    );
    this.name = 'DataDirInUseError';
  }
}

export function lockPath(dataDir: string): string {
  return path.join(dataDir, 'idsync.lock');
}

/** The lock's holder if it is a live process, else undefined (no lock, or its owner died). */
export function liveLockHolder(dataDir: string): LockHolder | undefined {
  const holder = readLockHolder(dataDir);
  return holder && isLive(holder, dataDir) ? holder : undefined;
}

function isLive(holder: LockHolder, dataDir: string): boolean {
  // Our own pid in a lock this process does not hold: a previous idsync that had the same pid (pid 1 of
  // a container killed and started again) died without releasing it.
  if (holder.pid === process.pid) return held.has(path.resolve(dataDir));
  return isProcessRunning(holder.pid, { node: true });
}

function readLockHolder(dataDir: string): LockHolder | undefined {
  return parseHolder(readLockText(lockPath(dataDir)));
}

function parseHolder(text: string | undefined): LockHolder | undefined {
  try {
    const holder = JSON.parse(text ?? '') as LockHolder;
    return Number.isInteger(holder.pid) ? holder : undefined;
  } catch {
    return undefined;
  }
}

/** The file's text; undefined only when there is no such file (anything else must not look like "free"). */
function readLockText(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/** Puts `text` in place as `file` unless a file is there (then false): never a half-written file to misread. */
function createWhole(file: string, text: string): boolean {
  const draft = `${file}.${process.pid}.new`;
  writeFileSync(draft, text);
  try {
    linkSync(draft, file);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  } finally {
    rmSync(draft, { force: true });
  }
}

function replaceWhole(file: string, text: string): void {
  const draft = `${file}.${process.pid}.new`;
  writeFileSync(draft, text);
  renameSync(draft, file);
}

/** A takeover is a few system calls; a marker older than this was left by a taker that will not finish. */
const TAKEOVER_MS = 10_000;

function markerTime(marker: string): number | undefined {
  try {
    return statSync(marker).mtimeMs;
  } catch {
    return undefined;
  }
}

export class TakeoverInterruptedError extends Error {
  constructor(readonly marker: string) {
    super(
      `a takeover of this data directory's lock was interrupted (${marker} was left by a process that did not finish it); check that no idsync runs on it, then delete ${marker}`,
    );
    this.name = 'TakeoverInterruptedError';
  }
}

/**
 * Replaces the lock `stale` (its text, judged dead) with ours, if it is still that lock. Only the
 * starter that creates the marker may replace it; the others wait for the marker to go, then judge the
 * lock again. A marker whose creator died is not removed here (two removers would race again): the
 * operator is told, and the window for that is a few system calls.
 */
function takeOver(file: string, stale: string | undefined, holder: LockHolder): 'taken' | 'retry' {
  const marker = `${file}.takeover`;
  if (!createWhole(marker, String(process.pid))) {
    const text = readLockText(marker);
    if (text === undefined) return 'retry'; // its taker finished in between
    const taker = Number.parseInt(text, 10);
    // Interrupted: unreadable (a power cut before its write reached the disk), its creator gone, our own
    // pid (a previous idsync with this pid; this process takes over synchronously, never twice), or
    // there for longer than a takeover's few system calls can take (its pid now another Node program's,
    // or its taker stopped with Ctrl-Z).
    const age = Date.now() - (markerTime(marker) ?? Date.now());
    const interrupted =
      !Number.isInteger(taker) ||
      taker === process.pid ||
      !isProcessRunning(taker, { node: true }) ||
      age > TAKEOVER_MS;
    // Judged on the marker as it was read: a taker that finished (and exited) since is no interruption.
    if (interrupted && readLockText(marker) === text) throw new TakeoverInterruptedError(marker);
    return 'retry';
  }
  try {
    if (readLockText(file) !== stale) return 'retry';
    replaceWhole(file, JSON.stringify(holder));
    return 'taken';
  } finally {
    rmSync(marker, { force: true });
  }
}

export interface DataDirLock {
  readonly holder: LockHolder;
  /** Records where this holder can be reached (ports, the URL it listens at). */
  update(details: Partial<Pick<LockHolder, 'publicUrl' | 'httpPort' | 'postgresPort' | 'redisPort'>>): void;
  release(): void;
}

/** Locks this process holds, by directory: nested one-shot helpers share one lock. */
const held = new Map<string, { lock: DataDirLock; references: number }>();

/**
 * Takes the data directory. A live daemon holding it: DataDirInUseError at once. A live one-shot
 * command holding it: waits up to `waitMs` for it to finish, then DataDirInUseError. A lock whose owner
 * is dead is taken over.
 */
export async function acquireDataDirLock(
  dataDir: string,
  claim: Pick<LockHolder, 'command' | 'detail' | 'publicUrl'>,
  waitMs: number,
): Promise<DataDirLock> {
  const directory = path.resolve(dataDir);
  const mine = held.get(directory);
  if (mine) {
    mine.references += 1;
    return mine.lock;
  }
  mkdirSync(directory, { recursive: true });
  const file = lockPath(directory);
  const holder: LockHolder = { pid: process.pid, ...claim, startedAt: new Date().toISOString() };
  const deadline = Date.now() + waitMs;
  for (;;) {
    if (createWhole(file, JSON.stringify(holder))) break;
    const text = readLockText(file);
    if (text === undefined) continue; // released in between: create it again
    const other = parseHolder(text);
    if (!other || !isLive(other, directory)) {
      // Its owner died without releasing it (kill -9, a crash, a reboot; unreadable: a power cut before
      // its write reached the disk): take it over, unless another starter does so first.
      if (takeOver(file, text, holder) === 'taken') break;
      await sleep(10);
      continue;
    }
    if (other.command !== 'one-shot' || Date.now() > deadline) throw new DataDirInUseError(directory, other);
    await sleep(100);
  }

  const lock: DataDirLock = {
    holder,
    update(details) {
      Object.assign(holder, details);
      replaceWhole(file, JSON.stringify(holder));
    },
    release() {
      const entry = held.get(directory);
      if (entry && --entry.references > 0) return;
      held.delete(directory);
      if (readLockHolder(directory)?.pid === process.pid) rmSync(file, { force: true });
    },
  };
  held.set(directory, { lock, references: 1 });
  return lock;
}

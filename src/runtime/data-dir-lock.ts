import { closeSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
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
  if (!holder) return undefined;
  // Our own pid in a lock this process does not hold: a previous idsync that had the same pid (pid 1 of
  // a container killed and started again) died without releasing it.
  if (holder.pid === process.pid) return held.has(path.resolve(dataDir)) ? holder : undefined;
  return isProcessRunning(holder.pid, { node: true }) ? holder : undefined;
}

function readLockHolder(dataDir: string): LockHolder | undefined {
  try {
    const holder = JSON.parse(readFileSync(lockPath(dataDir), 'utf8')) as LockHolder;
    return Number.isInteger(holder.pid) ? holder : undefined;
  } catch {
    return undefined;
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
    try {
      const fd = openSync(file, 'wx', 0o644);
      writeFileSync(fd, JSON.stringify(holder));
      closeSync(fd);
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const other = liveLockHolder(directory);
    if (!other) {
      // Its owner died without releasing it (kill -9, a crash, a reboot): take it over.
      rmSync(file, { force: true });
      continue;
    }
    if (other.command !== 'one-shot' || Date.now() > deadline) throw new DataDirInUseError(directory, other);
    await sleep(100);
  }

  const write = () => {
    const next = `${file}.${process.pid}`;
    writeFileSync(next, JSON.stringify(holder));
    renameSync(next, file);
  };
  const lock: DataDirLock = {
    holder,
    update(details) {
      Object.assign(holder, details);
      write();
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

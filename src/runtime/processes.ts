import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';

/** An embedded server: started by this process, adopted from a dead owner, or a running daemon's (used as a guest). */
export interface LocalServer {
  url: string;
  port: number;
  /** True when it was already running (left by an idsync that died, or the running daemon's). */
  adopted: boolean;
  /** Stops it if this process owns it (started or adopted); a guest leaves it running. */
  stop(): Promise<void>;
}

/**
 * owner: this process holds the data directory, so a server found running there was left by a dead
 * owner and is adopted (stopped at the end); guest: a running daemon holds it, so its server is used
 * and left running, and never started here.
 */
export type ServerRole = 'owner' | 'guest';

export class EmbeddedServerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EmbeddedServerError';
  }
}

export interface ProcessIdentity {
  uid: number;
  gid: number;
}

/**
 * Whether `pid` is alive and may be what a pid file says it is. A pid file outlives its process (kill -9,
 * a container killed, a power cut) and its pid is then often another's: in a container the next idsync
 * is pid 1 again, on a host pids are reused. Only positive proof makes it "not running": /proc shows the
 * pid running something else (its command line lacks `marker`, or with `node` its program is no Node
 * runtime: a kernel thread, `sleep`, …). When /proc cannot tell (another user's process, `hidepid`, not
 * Linux), a live pid is taken at its word: taking over a live daemon's lock would stop its servers.
 */
export function isProcessRunning(pid: number, expected: { marker: string } | { node: true }): boolean {
  if (!isProcessAlive(pid)) return false;
  let commandLine: string[];
  try {
    commandLine = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return true;
  }
  if ('marker' in expected) return commandLine.includes(expected.marker);
  // A kernel thread has an empty command line; Node upgraded in place keeps its argv[0].
  return /(^|\/)(node|nodejs|bun|deno)[^/]*$/i.test(commandLine[0] ?? '');
}

export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function readPid(pidFile: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(pidFile, 'utf8').split('\n')[0] ?? '', 10);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

const ownedChildren = new Set<ChildProcess>();
let exitHookInstalled = false;

/**
 * Starts a server in its own process group, so the Ctrl-C a terminal sends to idsync's group does not
 * reach it: idsync drains its requests and jobs first and stops its servers last. If idsync dies
 * without that orderly stop, the exit hook still signals every child it owns.
 */
export function spawnServer(
  command: string,
  args: string[],
  options: { identity?: ProcessIdentity; env?: NodeJS.ProcessEnv; cwd?: string },
): ChildProcess {
  const child = spawn(command, args, {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: options.env ?? process.env,
    cwd: options.cwd,
    ...(options.identity ?? {}),
  });
  ownedChildren.add(child);
  child.once('exit', () => ownedChildren.delete(child));
  // A server that cannot be spawned (not executable, gone) must not crash the process with an unhandled
  // error event, whose report prints the command line and the password on it: the caller's wait for
  // the server to answer fails instead, with its own message.
  child.on('error', () => ownedChildren.delete(child));
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const c of ownedChildren) c.kill('SIGTERM');
    });
  }
  return child;
}

/** Sends `signal` and waits for the child to exit, escalating to SIGKILL after `graceMs`. */
export async function stopChild(
  child: ChildProcess,
  signal: NodeJS.Signals,
  graceMs = 20_000,
): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  try {
    await exited;
  } finally {
    clearTimeout(timer);
  }
}

/** Sends `signal` to a process idsync did not spawn in this run (a server left by a killed start). */
export async function stopPid(pid: number, signal: NodeJS.Signals, graceMs = 20_000): Promise<void> {
  try {
    process.kill(pid, signal);
  } catch {
    return;
  }
  const deadline = Date.now() + graceMs;
  while (isProcessAlive(pid) && Date.now() < deadline) await sleep(50);
  if (isProcessAlive(pid)) process.kill(pid, 'SIGKILL');
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export function findOnPath(command: string): string | undefined {
  try {
    return execFileSync('sh', ['-c', `command -v ${command}`], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
}

/** Collects a child's output so a failed start can say why. */
export function captureOutput(child: ChildProcess, onLine: (line: string) => void): () => string {
  let tail = '';
  const take = (chunk: Buffer) => {
    const text = chunk.toString('utf8');
    tail = (tail + text).slice(-4000);
    for (const line of text.split('\n')) if (line.trim()) onLine(line);
  };
  child.stdout?.on('data', take);
  child.stderr?.on('data', take);
  return () => tail;
}

import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { vi } from 'vitest';

/*
 * Each CLI process compiles and loads the whole CLI through tsx: about 2 s on an idle 2-core machine and
 * several times that on a busy one. A test file that runs the CLI as processes therefore gives each test
 * two minutes; the CLI's own waits are bounded well below that.
 */
vi.setConfig({ testTimeout: 120_000 });

export const CLI_ENTRY = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the real `idsync` CLI (from source, through tsx) as a separate process. */
export function runCli(args: string[], env: NodeJS.ProcessEnv, timeoutMs = 60_000): Promise<CliResult> {
  const child = spawnCli(args, env);
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d) => {
    stdout += d;
  });
  child.stderr?.on('data', (d) => {
    stderr += d;
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`idsync ${args.join(' ')} did not finish in ${timeoutMs} ms\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** tsx's loader by absolute path, so the CLI can run with its working directory outside the checkout. */
const TSX_LOADER = import.meta.resolve('tsx');

/**
 * A data directory of this test file's own, in the run's scratch folder (TMPDIR, set by the global
 * setup): test files run in parallel, and a data directory admits one idsync at a time.
 */
let fileDataDir: string | undefined;
function dataDirOfThisFile(): string {
  fileDataDir ??= mkdtempSync(path.join(os.tmpdir(), 'idsync-cli-'));
  chmodSync(fileDataDir, 0o755);
  return fileDataDir;
}

/**
 * Runs in the test run's scratch folder with a data directory there too (unless the test gives one),
 * so nothing lands in the checkout.
 */
export function spawnCli(args: string[], env: NodeJS.ProcessEnv): ChildProcess {
  return spawn(process.execPath, ['--import', TSX_LOADER, CLI_ENTRY, ...args], {
    cwd: process.env.TMPDIR,
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      // tsx keeps its compile cache in the temporary folder: the system's, so it is warm across runs.
      TMPDIR: process.env.IDSYNC_TEST_SYSTEM_TMPDIR ?? os.tmpdir(),
      IDSYNC_DATA_DIR: dataDirOfThisFile(),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** Starts `idsync worker` as its own process and resolves once it says it is running. */
export async function startWorkerProcess(env: NodeJS.ProcessEnv): Promise<ChildProcess> {
  const child = spawnCli(['worker'], env);
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (chunk) => String(chunk).includes('worker running') && resolve());
    child.once('exit', (code) => reject(new Error(`worker exited with ${code}`)));
  });
  return child;
}

/** Sends `signal` (a `kill -9` by default) and resolves once the process has exited. */
export async function stopProcess(child: ChildProcess, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill(signal);
  await exited;
}

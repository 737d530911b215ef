import { type Config, ConfigError, loadConfig } from '../config.js';
import { connectDatabase, type DatabaseHandle } from '../db/client.js';
import { runMigrations } from '../db/migrate.js';
import { createLogger } from '../log.js';
import { provideDatabase } from '../runtime/infrastructure.js';

/** Exit codes, after sysexits.h, so scripts can tell a typo from a broken database. */
export const EXIT = { ok: 0, failure: 1, usage: 64, dataError: 65, config: 78 } as const;

export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

export function configOrExit(): Config {
  try {
    return loadConfig();
  } catch (error) {
    if (error instanceof ConfigError)
      throw new CliError(`configuration error: ${error.message}`, EXIT.config);
    throw error;
  }
}

/** Runs a one-shot command against the database (starting the embedded one if idsync is not running). */
export async function withDatabase<T>(
  work: (database: DatabaseHandle, config: Config) => Promise<T>,
): Promise<T> {
  const config = configOrExit();
  // One-shot commands keep their own chatter quiet; their output is the answer, not a log.
  const log = createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel);
  const endpoint = await provideDatabase(config, log, false);
  try {
    await runMigrations(endpoint.url);
    const database = connectDatabase(endpoint.url, { max: 2 });
    try {
      return await work(database, config);
    } finally {
      await database.close();
    }
  } finally {
    await endpoint.release();
  }
}

import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.js';

function errorOf(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error('expected a ConfigError');
}

describe('configuration from the environment', () => {
  it('runs on embedded defaults when nothing is set', () => {
    const config = loadConfig({});
    expect(config.databaseUrl).toBeUndefined();
    expect(config.redisUrl).toBeUndefined();
    expect(config.port).toBe(8080);
    expect(config.publicUrl).toBe('http://localhost:8080');
    expect(config.dataDir).toMatch(/\.idsync$/);
  });

  it('leaves the process count to the command unless WORKER_PROCESSES is set', () => {
    expect(loadConfig({}).processes).toBeUndefined();
    expect(loadConfig({ WORKER_PROCESSES: '3' }).processes).toBe(3);
  });

  it('treats an empty variable as unset', () => {
    expect(loadConfig({ DATABASE_URL: '', PORT: '' }).port).toBe(8080);
  });

  it('derives nothing from PUBLIC_URL but strips its trailing slash', () => {
    expect(loadConfig({ PUBLIC_URL: 'https://idsync.example.com/' }).publicUrl).toBe(
      'https://idsync.example.com',
    );
  });

  it.each([
    [{ PORT: 'abc' }, 'PORT', 'must be a number'],
    [{ PORT: '70000' }, 'PORT', 'between 0 and 65535'],
    [{ PORT: '80.5' }, 'PORT', 'whole number'],
    [{ DATABASE_URL: 'mysql://x@y/z' }, 'DATABASE_URL', 'postgres://'],
    [{ REDIS_URL: 'localhost:6379' }, 'REDIS_URL', 'redis://'],
    [{ LOG_LEVEL: 'loud' }, 'LOG_LEVEL', 'must be one of'],
    [{ WORKER_PROCESSES: '0' }, 'WORKER_PROCESSES', 'greater than 0'],
    [{ PUBLIC_URL: 'ftp://x' }, 'PUBLIC_URL', 'http:// or https://'],
    [{ IDSYNC_ADMIN_TOKEN: 'short' }, 'IDSYNC_ADMIN_TOKEN', 'at least 32'],
    [{ WORKER_CONCURRENCY: '0' }, 'WORKER_CONCURRENCY', 'greater than 0'],
  ])('names the variable and the problem for %o', (env, variable, problem) => {
    const error = errorOf(env);
    expect(error.variable).toBe(variable);
    expect(error.message).toContain(problem);
    expect(error.message.startsWith(`${variable}: `)).toBe(true);
  });
});

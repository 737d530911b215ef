import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, inject, it } from 'vitest';
import { createTenant } from '../src/tenants/tenants.js';
import { spawnCli } from './support/cli.js';
import { createTestDatabase, uniquePrefix } from './support/database.js';
import { freePort } from './support/ports.js';

/** Pids of idsync processes whose parent is `pid` (Linux /proc; tsx adds an esbuild child too). */
function idsyncChildrenOf(pid: number): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .filter((entry) => {
      try {
        const parent = Number(readFileSync(`/proc/${entry}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]);
        return parent === pid && readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes('serve');
      } catch {
        return false;
      }
    })
    .map(Number);
}

const METRICS_TOKEN = randomBytes(24).toString('hex');

describe('idsync serve --processes', async () => {
  const database = await createTestDatabase();
  const { scimToken } = await createTenant(database.db, 'processes', 'test');

  it('serves SCIM from two processes on one port and stops both on SIGTERM', async () => {
    const port = await freePort();
    const child = spawnCli(['serve', '--processes', '2'], {
      DATABASE_URL: database.url,
      REDIS_URL: inject('redisUrl'),
      IDSYNC_QUEUE_PREFIX: uniquePrefix('processes'),
      PORT: String(port),
      LOG_LEVEL: 'warn',
      DRIFT_TICK_MS: '0',
      METRICS_TOKEN: METRICS_TOKEN,
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    let output = '';
    child.stdout?.on('data', (d) => {
      output += d;
    });
    await expect.poll(() => output, { timeout: 90_000, interval: 200 }).toContain('(2 processes)');

    const members = idsyncChildrenOf(child.pid!);
    expect(members).toHaveLength(2);
    // Enough keep-alive-less requests that the primary hands connections to both processes.
    const responses = await Promise.all(
      Array.from({ length: 20 }, () =>
        fetch(`http://127.0.0.1:${port}/scim/v2/Users?count=1`, {
          headers: { Authorization: `Bearer ${scimToken}`, Connection: 'close' },
        }),
      ),
    );
    expect(responses.map((r) => r.status)).toEqual(responses.map(() => 200));

    // Whichever process a scrape reaches, it reports the whole group (the primary aggregates).
    const scraped = await Promise.all(
      Array.from({ length: 6 }, async () => {
        const response = await fetch(`http://127.0.0.1:${port}/metrics`, {
          headers: { Authorization: `Bearer ${METRICS_TOKEN}`, Connection: 'close' },
        });
        const text = await response.text();
        return /^idsync_scim_requests_total\{[^}]*resource="Users",method="GET",status="200"[^}]*\} (\d+)$/m.exec(
          text,
        )?.[1];
      }),
    );
    expect(scraped).toEqual(scraped.map(() => '20'));

    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    for (const pid of members) expect(() => process.kill(pid, 0)).toThrow();
  }, 120_000);

  it('refuses a process count that is not a whole number', async () => {
    const child = spawnCli(['serve', '--processes', 'two'], { DATABASE_URL: database.url });
    let errors = '';
    child.stderr?.on('data', (d) => {
      errors += d;
    });
    expect(await new Promise((resolve) => child.on('exit', resolve))).toBe(64);
    expect(errors).toContain('--processes');
  }, 120_000);
});

import { describe, expect, it } from 'vitest';
import { recordForReconcile } from '../src/jobs/outbox.js';
import { createTenant } from '../src/tenants/tenants.js';
import { startTestDaemon, testConfig } from './support/daemon.js';
import { createTestDatabase } from './support/database.js';
import { capturingLogger } from './support/log-capture.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('graceful shutdown', () => {
  it('finishes in-flight requests and running jobs, then refuses new connections', async () => {
    const database = await createTestDatabase();
    const { tenant } = await createTenant(database.db, 'acme', 'test');
    const { log } = capturingLogger('silent');
    const jobEvents: string[] = [];
    const daemon = await startTestDaemon({
      mode: 'start',
      config: testConfig(database.url),
      log,
      mounts: () => [
        {
          path: '/slow',
          router: async (_req, res) => {
            await sleep(700);
            res.json({ finished: true });
          },
        },
      ],
      jobHandler: async (payload) => {
        jobEvents.push(`started ${payload.subjectId}`);
        await sleep(800);
        jobEvents.push(`finished ${payload.subjectId}`);
      },
    });
    const base = `http://127.0.0.1:${daemon.port}`;

    await recordForReconcile(database.db, [
      { tenantId: tenant.id, lane: 'reconcile', subjectType: 'user', subjectId: 'u1', cause: {} },
    ]);
    await expect.poll(() => jobEvents, { timeout: 5_000 }).toContain('started u1');
    const inFlight = fetch(`${base}/slow`);
    await sleep(100);

    await daemon.stop();

    const response = await inFlight;
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ finished: true });
    expect(jobEvents).toEqual(['started u1', 'finished u1']);
    await expect(fetch(`${base}/healthz`)).rejects.toThrow();
  });
});

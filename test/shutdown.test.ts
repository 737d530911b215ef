import { describe, expect, it } from 'vitest';
import { recordForReconcile } from '../src/jobs/outbox.js';
import { createTenant } from '../src/tenants/tenants.js';
import { startTestDaemon, testConfig } from './support/daemon.js';
import { createTestDatabase } from './support/database.js';
import { latch } from './support/latch.js';
import { capturingLogger } from './support/log-capture.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('graceful shutdown', () => {
  it('finishes in-flight requests and running jobs, then refuses new connections', async () => {
    const database = await createTestDatabase();
    const { tenant } = await createTenant(database.db, 'acme', 'test');
    const { log } = capturingLogger('silent');
    const jobEvents: string[] = [];
    // Latches, not sleeps: the request is in its handler and the job runs when the stop begins, and
    // both go on for a while after it, however slow the machine.
    const slowEntered = latch();
    const stopping = latch();
    const daemon = await startTestDaemon({
      mode: 'start',
      config: testConfig(database.url),
      log,
      mounts: () => [
        {
          path: '/slow',
          router: async (_req, res) => {
            slowEntered.open();
            await stopping.opened;
            await sleep(300);
            res.json({ finished: true });
          },
        },
      ],
      jobHandler: async (payload) => {
        jobEvents.push(`started ${payload.subjectId}`);
        await stopping.opened;
        await sleep(300);
        jobEvents.push(`finished ${payload.subjectId}`);
      },
    });
    const base = `http://127.0.0.1:${daemon.port}`;

    await recordForReconcile(database.db, [
      { tenantId: tenant.id, lane: 'reconcile', subjectType: 'user', subjectId: 'u1', cause: {} },
    ]);
    // Through the outbox relay and the job queue: seconds on a loaded machine.
    await expect.poll(() => jobEvents, { timeout: 15_000 }).toContain('started u1');
    const inFlight = fetch(`${base}/slow`);
    await slowEntered.opened;

    const stopped = daemon.stop();
    stopping.open();
    await stopped;

    const response = await inFlight;
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ finished: true });
    expect(jobEvents).toEqual(['started u1', 'finished u1']);
    await expect(fetch(`${base}/healthz`)).rejects.toThrow();
  });
});

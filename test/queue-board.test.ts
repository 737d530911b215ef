import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { createAdminToken } from '../src/security/admin-tokens.js';
import { createTenant } from '../src/tenants/tenants.js';
import { startTestDaemon, testConfig } from './support/daemon.js';
import { createTestDatabase } from './support/database.js';
import { capturingLogger } from './support/log-capture.js';
import { freePort } from './support/ports.js';

const ADMIN_TOKEN = randomBytes(24).toString('hex');

describe('the queue dashboard (Bull Board) at /admin/queues', async () => {
  const database = await createTestDatabase();
  const { tenant } = await createTenant(database.db, 'acme', 'test');
  const port = await freePort();
  const publicUrl = `http://127.0.0.1:${port}`;
  const { log } = capturingLogger('silent');
  // Every job fails at once: the failed set is what operators retry and auditors may only look at.
  const daemon = await startTestDaemon({
    mode: 'start',
    config: testConfig(database.url, { port, publicUrl, adminToken: ADMIN_TOKEN }),
    log,
    jobHandler: async () => {
      throw new Error('platform said no');
    },
  });
  afterAll(() => daemon.stop());
  const token = async (name: string, role: 'auditor' | 'operator', tenantId: string | null) =>
    (await createAdminToken(database.db, { name, role, tenantId, actor: 'test' })).token;
  const auditor = await token('auditor-all', 'auditor', null);
  const operator = await token('operator-all', 'operator', null);
  const tenantOperator = await token('operator-acme', 'operator', tenant.id);
  const board = `${publicUrl}/admin/queues`;
  const as = (credential: string | undefined, init: RequestInit = {}) => ({
    ...init,
    headers: { ...(credential ? { Authorization: credential } : {}), ...(init.headers ?? {}) },
  });
  const bearer = (t: string) => `Bearer ${t}`;
  const basic = (t: string) => `Basic ${Buffer.from(`ops:${t}`).toString('base64')}`;
  const failedCount = () => daemon.resources.queues.reconcile.getFailedCount();

  const job = await daemon.resources.queues.reconcile.add(
    'user',
    { tenantId: tenant.id, subjectType: 'user', subjectId: 'someone' },
    { attempts: 1 },
  );

  it('asks for credentials without one, and refuses a wrong token', async () => {
    for (const credential of [undefined, bearer(randomBytes(24).toString('hex')), basic('nope')]) {
      const response = await fetch(board, as(credential));
      expect(response.status).toBe(401);
      expect(response.headers.get('www-authenticate')).toContain('Basic realm="idsync queues"');
    }
    expect((await fetch(`${board}/api/queues`)).status).toBe(401);
  });

  it('refuses a token scoped to one tenant: the lanes hold every tenant’s jobs', async () => {
    const response = await fetch(`${board}/api/queues`, as(bearer(tenantOperator)));
    expect(response.status).toBe(403);
    expect(((await response.json()) as any).error.message).toContain('all tenants');
  });

  it('shows an operator the page and every lane, with the failed job', async () => {
    const page = await fetch(board, as(basic(operator)));
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toContain('text/html');
    await expect.poll(failedCount, { timeout: 10_000 }).toBe(1);
    const response = await fetch(
      `${board}/api/queues?activeQueue=idsync-reconcile&status=failed`,
      as(bearer(operator)),
    );
    expect(response.status).toBe(200);
    const { queues } = (await response.json()) as {
      queues: {
        name: string;
        readOnlyMode: boolean;
        counts: Record<string, number>;
        jobs: { id: string }[];
      }[];
    };
    expect(queues.map((q) => q.name).sort()).toEqual([
      'idsync-deprovision',
      'idsync-reconcile',
      'idsync-scan',
    ]);
    const reconcile = queues.find((q) => q.name === 'idsync-reconcile')!;
    expect(reconcile.readOnlyMode).toBe(false);
    expect(reconcile.counts.failed).toBe(1);
    expect(reconcile.jobs.map((j) => String(j.id))).toEqual([String(job.id)]);
  });

  it('lets an auditor look but not retry or clean', async () => {
    const response = await fetch(`${board}/api/queues`, as(bearer(auditor)));
    expect(response.status).toBe(200);
    const { queues } = (await response.json()) as { queues: { name: string; readOnlyMode: boolean }[] };
    expect(queues.every((q) => q.readOnlyMode)).toBe(true);
    for (const path of [
      '/api/queues/idsync-reconcile/retry/failed',
      '/api/queues/idsync-reconcile/clean/failed',
    ]) {
      const refused = await fetch(`${board}${path}`, as(bearer(auditor), { method: 'PUT' }));
      expect(refused.status).toBe(403);
      expect(((await refused.json()) as any).error.message).toContain('operator role');
    }
    expect(await failedCount()).toBe(1);
  });

  it('refuses a change sent from another origin, even with an operator’s credential', async () => {
    const response = await fetch(
      `${board}/api/queues/idsync-reconcile/clean/failed`,
      as(basic(operator), { method: 'PUT', headers: { Origin: 'https://evil.example' } }),
    );
    expect(response.status).toBe(403);
    expect(await failedCount()).toBe(1);
  });

  it('refuses a change with neither Origin nor Referer (a script, or a request that hid them)', async () => {
    const response = await fetch(
      `${board}/api/queues/idsync-reconcile/clean/failed`,
      as(basic(operator), { method: 'PUT' }),
    );
    expect(response.status).toBe(403);
    expect(((await response.json()) as any).error.message).toMatch(/Origin or Referer/);
    expect(await failedCount()).toBe(1);
  });

  it('lets an operator retry the failed jobs, and audits it', async () => {
    const response = await fetch(
      `${board}/api/queues/idsync-reconcile/retry/failed`,
      as(bearer(operator), { method: 'PUT', headers: { Origin: publicUrl } }),
    );
    expect(response.status).toBeLessThan(300);
    // Retried, the job fails again (the handler always throws): its attempts grow.
    await expect
      .poll(async () => (await daemon.resources.queues.reconcile.getJob(job.id!))?.attemptsMade, {
        timeout: 10_000,
      })
      .toBeGreaterThan(1);
    await expect
      .poll(
        async () =>
          (await database.sql`SELECT actor, after FROM audit_log WHERE action = 'queue_board.put'`).map(
            (r) => r.actor,
          ),
        { timeout: 10_000 },
      )
      .toEqual(['admin:operator-all']);
  });
});

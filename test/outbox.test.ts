import { afterEach, describe, expect, inject, it } from 'vitest';
import { connectionReady, createRedisConnection } from '../src/jobs/connection.js';
import { recordForReconcile } from '../src/jobs/outbox.js';
import { OutboxRelay } from '../src/jobs/outbox-relay.js';
import { closeQueues, type JobPayload, openQueues } from '../src/jobs/queues.js';
import { startWorkerPool } from '../src/jobs/workers.js';
import { createTenant } from '../src/tenants/tenants.js';
import { createTestDatabase, type TestDatabase, uniquePrefix } from './support/database.js';
import { capturingLogger } from './support/log-capture.js';
import { startStoppableRedis } from './support/stoppable-redis.js';

const { log } = capturingLogger('silent');
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** The relay and a worker pool on the given Redis, recording every job the workers process. */
async function pipeline(database: TestDatabase, redisUrl: string) {
  const prefix = uniquePrefix('outbox');
  const processed: JobPayload[] = [];
  const producer = createRedisConnection(redisUrl, 'producer');
  await connectionReady(producer);
  const queues = openQueues(producer, prefix);
  const pool = await startWorkerPool({
    redisUrl,
    prefix,
    log,
    concurrency: 4,
    handler: async (payload) => {
      processed.push(payload);
    },
  });
  const relay = new OutboxRelay({ sql: database.sql, queues, log, pollMs: 100 });
  await relay.start();
  cleanups.push(async () => {
    await relay.stop();
    await pool.close();
    await closeQueues(queues);
    producer.disconnect();
  });
  return { processed, relay, queues };
}

async function writeChange(database: TestDatabase, tenantId: string, subjectId: string, commit = true) {
  await database.db
    .transaction(async (tx) => {
      await recordForReconcile(tx, [
        {
          tenantId,
          lane: 'deprovision',
          subjectType: 'user',
          subjectId,
          cause: { event: 'scim.deactivated' },
        },
      ]);
      if (!commit) tx.rollback();
    })
    .catch((error) => {
      if (commit) throw error;
    });
}

async function pendingRows(database: TestDatabase): Promise<number> {
  const [row] = await database.sql`SELECT count(*)::int AS n FROM outbox WHERE relayed_at IS NULL`;
  return row!.n as number;
}

describe('outbox relay', () => {
  it('turns a committed outbox row into exactly one processed job', async () => {
    const database = await createTestDatabase();
    const { tenant } = await createTenant(database.db, 'acme', 'test');
    const { processed } = await pipeline(database, inject('redisUrl'));
    await writeChange(database, tenant.id, 'user-1');
    await expect.poll(() => processed.length, { timeout: 15_000 }).toBe(1);
    expect(processed[0]).toMatchObject({
      tenantId: tenant.id,
      subjectType: 'user',
      subjectId: 'user-1',
      cause: { event: 'scim.deactivated' },
    });
    // The job can run before the relay's own transaction (which marks the row relayed) commits.
    await expect.poll(() => pendingRows(database), { timeout: 5_000 }).toBe(0);
    await new Promise((r) => setTimeout(r, 500));
    expect(processed).toHaveLength(1);
  });

  it('relays nothing for a transaction that rolled back', async () => {
    const database = await createTestDatabase();
    const { tenant } = await createTenant(database.db, 'acme', 'test');
    const { processed } = await pipeline(database, inject('redisUrl'));
    await writeChange(database, tenant.id, 'user-rolled-back', false);
    await writeChange(database, tenant.id, 'user-committed');
    await expect.poll(() => processed.length, { timeout: 15_000 }).toBe(1);
    await new Promise((r) => setTimeout(r, 300));
    expect(processed.map((p) => p.subjectId)).toEqual(['user-committed']);
  });

  it('gives each row one job when two relays compete for the same rows', async () => {
    const database = await createTestDatabase();
    const { tenant } = await createTenant(database.db, 'acme', 'test');
    const first = await pipeline(database, inject('redisUrl'));
    await first.relay.stop();
    for (let i = 0; i < 50; i++) await writeChange(database, tenant.id, `user-${i}`);
    // A second relay on the same queues, racing the first over the same 50 rows.
    const racing = new OutboxRelay({ sql: database.sql, queues: first.queues, log, pollMs: 50 });
    await Promise.all([first.relay.start(), racing.start()]);
    cleanups.push(() => racing.stop());
    await expect.poll(() => first.processed.length, { timeout: 10_000 }).toBe(50);
    await new Promise((r) => setTimeout(r, 300));
    expect(new Set(first.processed.map((p) => p.subjectId)).size).toBe(50);
    expect(first.processed).toHaveLength(50);
  });

  it('keeps the change while Redis is down at commit time, and delivers it once Redis is back', async () => {
    const database = await createTestDatabase();
    const { tenant } = await createTenant(database.db, 'acme', 'test');
    const redis = await startStoppableRedis();
    cleanups.push(async () => {
      await redis.dispose();
    });
    const { processed } = await pipeline(database, redis.url);

    await redis.stop();
    await writeChange(database, tenant.id, 'user-during-outage');
    await new Promise((r) => setTimeout(r, 1_000));
    expect(await pendingRows(database)).toBe(1);
    expect(processed).toHaveLength(0);

    await redis.start();
    await expect.poll(() => processed.length, { timeout: 20_000, interval: 100 }).toBe(1);
    expect(processed[0]?.subjectId).toBe('user-during-outage');
    // The job can run before the relay's own transaction (which marks the row relayed) commits.
    await expect.poll(() => pendingRows(database), { timeout: 5_000 }).toBe(0);
    await new Promise((r) => setTimeout(r, 500));
    expect(processed).toHaveLength(1);
  });
});

describe('outbox relay, an initial push', () => {
  it('settles reconcile events of users no rule touches in its own batch: no job for them, a job for the rest', async () => {
    const database = await createTestDatabase();
    const { sql } = database;
    const { tenant } = await createTenant(database.db, 'acme', 'test');
    const t = tenant.id;
    await sql`INSERT INTO assignment_rules (tenant_id, idp_group, target, team_name, team_role)
      VALUES (${t}, 'Engineering', 'team', 'core', 'member')`;
    const [everyone] =
      await sql`INSERT INTO groups (tenant_id, display_name) VALUES (${t}, 'Everyone') RETURNING id`;
    const [engineering] =
      await sql`INSERT INTO groups (tenant_id, display_name) VALUES (${t}, 'Engineering') RETURNING id`;
    await sql`INSERT INTO users (tenant_id, user_name, origin)
      SELECT ${t}, 'quiet' || n || '@example.com', 'scim' FROM generate_series(1, 200) n`;
    await sql`INSERT INTO users (tenant_id, user_name, origin)
      VALUES (${t}, 'engineer@example.com', 'scim'), (${t}, 'Member@Example.com', 'scim'), (${t}, 'busy@example.com', 'scim')`;
    await sql`INSERT INTO group_members (tenant_id, group_id, user_id)
      SELECT ${t}, ${everyone!.id}, id FROM users WHERE tenant_id = ${t}`;
    await sql`INSERT INTO group_members (tenant_id, group_id, user_id)
      SELECT ${t}, ${engineering!.id}, id FROM users WHERE user_name = 'engineer@example.com'`;
    // Holds nothing a rule gives, but is a member of the Enterprise Account (the platform spells it lower-case).
    await sql`INSERT INTO platform_enterprise_members (tenant_id, account, permissions)
      VALUES (${t}, 'member@example.com', '{view}')`;
    const idOf = async (name: string) =>
      (await sql`SELECT id::text FROM users WHERE user_name = ${name}`)[0]!.id as string;
    const busy = await idOf('busy@example.com');
    // A reconcile of "busy" is in progress: the relay must not judge it under the job's feet.
    const holder = await sql.reserve();
    await holder`SELECT pg_advisory_lock(hashtextextended(${`user:${busy}`}, 0))`;

    await sql`INSERT INTO outbox (tenant_id, lane, subject_type, subject_id)
      SELECT ${t}, 'reconcile', 'user', id::text FROM users WHERE tenant_id = ${t}`;
    const { processed } = await pipeline(database, inject('redisUrl'));
    await expect.poll(() => processed.length, { timeout: 10_000 }).toBe(3);
    await holder`SELECT pg_advisory_unlock(hashtextextended(${`user:${busy}`}, 0))`;
    holder.release();
    expect(new Set(processed.map((p) => p.subjectId))).toEqual(
      new Set([await idOf('engineer@example.com'), await idOf('Member@Example.com'), busy]),
    );
    const outboxRows = async () =>
      (
        await sql`
          SELECT count(*) FILTER (WHERE completed_at IS NOT NULL)::int AS settled,
                 count(*) FILTER (WHERE relayed_at IS NULL)::int AS unrelayed FROM outbox WHERE tenant_id = ${t}`
      )[0];
    // The 200 quiet users' rows are complete (the recording handler completes nothing itself). The jobs
    // can run before the relay's transaction (which settles and marks the batch) commits: wait for it.
    await expect.poll(outboxRows, { timeout: 5_000 }).toMatchObject({ settled: 200, unrelayed: 0 });
  });
});

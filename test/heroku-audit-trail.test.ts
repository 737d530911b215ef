import { describe, expect, it, vi } from 'vitest';
import { daysBetween, pollAuditTrail } from '../src/drift/audit-trail.js';
import { inactiveSeats } from '../src/drift/seats.js';
import { recordReleaseActivity } from '../src/runtime/job-handler.js';
import { updateTenantPolicy } from '../src/tenants/tenants.js';
import { startHerokuTest } from './support/heroku-setup.js';
import { GROUP, patch, USER } from './support/scim-fixtures.js';

vi.setConfig({ testTimeout: 90_000 });
const DAY = 86_400_000;

/*
 * Minute-level drift on the simulated Heroku: the audit trail is polled every second here (every 60 s
 * by default). A membership a person adds on the dashboard for an offboarded user is reported (policy
 * report) or removed (policy fix) within the poll interval; idsync's own changes never become findings;
 * the cursor survives a restart; releases and audit-trail actors feed the seat audit.
 */
describe('audit-trail polling and activity on the simulator', async () => {
  const heroku = await startHerokuTest({
    platform: (simulator) => {
      simulator.addTeam('core', [['boss@example.com', 'admin']]);
      simulator.addTeam('side', [['boss@example.com', 'admin']]);
      simulator.addTeam('ops', [['boss@example.com', 'admin']]);
      simulator.addApp('api', 'core');
    },
    rules: [{ target: 'team', idpGroup: 'Engineering', team: 'core', role: 'member' }],
    policy: { auditPollSeconds: 1 },
  });
  const { simulator, database, tenant, scim, scan } = heroku;
  const findings = async () =>
    database.sql<{ subject_id: string; after: any }[]>`
      SELECT subject_id, after FROM audit_log WHERE tenant_id = ${tenant.id} AND action = 'drift.found' ORDER BY id`;
  /** Where the poller has read up to, and the newest event on the trail: equal once it is quiet. */
  const cursorAt = async () =>
    new Date(
      (
        await database.sql`SELECT last_event_at FROM platform_audit_cursors WHERE tenant_id = ${tenant.id}`
      )[0]!.last_event_at,
    ).getTime();
  const newestEvent = () => Math.max(...simulator.events.map((e) => e.createdAt.getTime()));
  const group = await scim('POST', '/Groups', { schemas: [GROUP], displayName: 'Engineering' });
  const ada = await scim('POST', '/Users', { schemas: [USER], userName: 'ada@example.com', active: true });
  const eve = await scim('POST', '/Users', { schemas: [USER], userName: 'eve@example.com', active: true });

  it("idsync's own grants are in the audit trail but never become findings", async () => {
    await scim(
      'PATCH',
      `/Groups/${group.body.id}`,
      patch([{ op: 'add', path: 'members', value: [{ value: ada.body.id }] }]),
    );
    await expect
      .poll(() => simulator.grantsOf('ada@example.com'), { timeout: 30_000 })
      .toEqual(['enterprise', 'team core']);
    const event = simulator.events.find((e) => e.type === 'team_membership' && e.action === 'create');
    expect(event?.actor.email).toBe(simulator.account.email);
    // The poller has read past idsync's own event.
    await expect
      .poll(
        async () =>
          (
            await database.sql`SELECT last_event_at FROM platform_audit_cursors WHERE tenant_id = ${tenant.id}`
          )[0]?.last_event_at ?? 0,
        { timeout: 20_000 },
      )
      .toSatisfy((at) => new Date(at as string).getTime() >= event!.createdAt.getTime());
    expect(await findings()).toEqual([]);
  });

  it('policy report: a membership added by hand for an offboarded user is reported within the poll interval', async () => {
    expect(
      (await scim('PATCH', `/Users/${eve.body.id}`, patch([{ op: 'replace', value: { active: false } }])))
        .status,
    ).toBe(200);
    const addedAt = Date.now();
    simulator.dashboard.addTeamMember('side', 'eve@example.com', 'member', 'boss@example.com');
    await expect.poll(async () => (await findings()).length, { timeout: 30_000, interval: 100 }).toBe(1);
    const [finding] = await findings();
    expect(finding!.subject_id).toBe(eve.body.id);
    expect(finding!.after).toMatchObject({
      account: 'eve@example.com',
      class: 'excess-access',
      severity: 'critical',
      edge: 'team side',
      actor: 'boss@example.com',
      outcome: 'reported',
    });
    expect(Date.now() - addedAt).toBeLessThan(120_000);
    // Reported, not removed: a human decides under policy report.
    expect(simulator.grantsOf('eve@example.com')).toEqual(['team side']);
    // The security console shows it before any scan's report does.
    const publicUrl = heroku.daemon.resources.config.publicUrl;
    const login = await fetch(`http://127.0.0.1:${heroku.daemon.port}/console/acme/login`, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded', Origin: publicUrl },
      body: new URLSearchParams({ token: heroku.adminToken }).toString(),
    });
    expect(login.status).toBe(303);
    const page = await fetch(`http://127.0.0.1:${heroku.daemon.port}/console/acme`, {
      headers: { cookie: login.headers.get('set-cookie')!.split(';')[0]! },
    });
    const html = await page.text();
    const section = html.slice(html.indexOf('id="between-scans"'));
    expect(html).toContain('id="between-scans"');
    expect(section).toContain('eve@example.com');
    expect(section).toContain('boss@example.com');
    expect(section).toContain('reported: needs a person');
  });

  it('policy fix: the hand-added membership is removed through a deprovision', async () => {
    await updateTenantPolicy(database.db, 'acme', { driftPolicy: { 'excess-access': 'fix' } }, 'test');
    simulator.dashboard.addTeamMember('ops', 'eve@example.com', 'viewer', 'boss@example.com');
    await expect
      .poll(() => simulator.grantsOf('eve@example.com'), { timeout: 60_000, interval: 200 })
      .toEqual([]);
    const last = (await findings()).at(-1)!;
    expect(last.after).toMatchObject({ edge: 'team ops', outcome: 'fix-queued', severity: 'critical' });
  });

  it("an active user's hand-made grants: an extra app is removed (policy fix), a promotion is reported (wrong-role)", async () => {
    simulator.dashboard.addCollaborator('api', 'ada@example.com', ['view', 'deploy'], 'boss@example.com');
    await expect
      .poll(() => simulator.grantsOf('ada@example.com'), { timeout: 60_000, interval: 200 })
      .toEqual(['enterprise', 'team core']);
    // A team admin's app access is implied by the role (Heroku lists it as role admin): promoted after
    // the app edge is gone, so each grant is judged on its own.
    simulator.dashboard.addTeamMember('core', 'ada@example.com', 'admin', 'boss@example.com');
    const mine = async () =>
      (await findings()).filter((f) => f.subject_id === ada.body.id).map((f) => f.after);
    await expect.poll(async () => (await mine()).length, { timeout: 30_000, interval: 100 }).toBe(2);
    expect(await mine()).toEqual([
      expect.objectContaining({
        edge: 'app api',
        class: 'excess-access',
        severity: 'high',
        outcome: 'fix-queued',
      }),
      expect.objectContaining({
        edge: 'team core',
        class: 'wrong-role',
        severity: 'high',
        outcome: 'reported',
      }),
    ]);
    // Reported, not changed: her role stays as the person set it.
    expect(simulator.team('core')!.members.get(simulator.users.get('ada@example.com')!.id)?.role).toBe(
      'admin',
    );
  });

  it('a team created on the dashboard is recorded in the mirror', async () => {
    const team = simulator.dashboard.createTeam('brand-new', 'boss@example.com');
    await expect
      .poll(
        async () =>
          (
            await database.sql`SELECT name FROM teams WHERE tenant_id = ${tenant.id} AND remote_id = ${team.id}
              AND listed_at IS NOT NULL`
          ).map((r) => r.name),
        { timeout: 30_000 },
      )
      .toEqual(['brand-new']);
  });

  it('the cursor survives a restart: nothing is processed twice', async () => {
    // Quiet first: every event (idsync's own removals from the tests above included) has been read.
    await expect.poll(async () => (await cursorAt()) === newestEvent(), { timeout: 30_000 }).toBe(true);
    const before = (await findings()).length;
    const eventsBefore = simulator.events.length;
    await heroku.daemon.stop();
    const restartedAt = Date.now();
    await heroku.startDaemon();
    // Wait for two polls after the restart.
    await expect
      .poll(() => simulator.requests.filter((r) => r.path.endsWith('/events') && r.at > restartedAt).length, {
        timeout: 30_000,
      })
      .toBeGreaterThanOrEqual(2);
    expect(simulator.events.length).toBe(eventsBefore);
    expect((await findings()).length).toBe(before);
    expect(await cursorAt()).toBe(newestEvent());
    // A direct poll overlapping the same day's events finds nothing new.
    const again = await pollAuditTrail(
      { database, connector: await heroku.daemon.resources.connectorFor(tenant.id, 'scan') },
      tenant.id,
    );
    expect(again.events).toBe(0);
  });

  it('a grant that reaches the trail late (stamped before the cursor) and one with no actor are both verified, once', async () => {
    await expect.poll(async () => (await cursorAt()) === newestEvent(), { timeout: 30_000 }).toBe(true);
    const before = (await findings()).length;
    // Heroku records this one late: its time is three minutes before what the poller has already read.
    // Stamped in the same tick it is added, so no poll can read it with its current time first.
    const cursor = await cursorAt();
    simulator.dashboard.addTeamMember('ops', 'eve@example.com', 'viewer', 'boss@example.com');
    simulator.events.at(-1)!.createdAt = new Date(cursor - 3 * 60_000);
    // A grant the trail names no actor for: not provably idsync's, so it is verified like a person's.
    simulator.dashboard.addTeamMember('side', 'eve@example.com', 'viewer', 'boss@example.com');
    (simulator.events.at(-1) as { actor: unknown }).actor = null;
    await expect
      .poll(
        async () =>
          (await findings())
            .slice(before)
            .map((f) => f.after.edge)
            .sort(),
        {
          timeout: 30_000,
          interval: 200,
        },
      )
      .toEqual(['team ops', 'team side']);
    // The fix policy removes both; once the poller has read idsync's own removals too, a poll re-reads
    // the overlap window (the late event included) and handles nothing again.
    await expect.poll(() => simulator.grantsOf('eve@example.com'), { timeout: 30_000 }).toEqual([]);
    await expect.poll(async () => (await cursorAt()) === newestEvent(), { timeout: 30_000 }).toBe(true);
    const again = await pollAuditTrail(
      { database, connector: await heroku.daemon.resources.connectorFor(tenant.id, 'scan') },
      tenant.id,
    );
    expect(again.events).toBe(0);
    expect((await findings()).length).toBe(before + 2);
  });

  it('seats inactive shows activity from releases and from audit-trail actors', async () => {
    // bob holds a seat; he deployed three days ago (a release, older than the poller's window).
    const bob = await scim('POST', '/Users', { schemas: [USER], userName: 'bob@example.com', active: true });
    await scim(
      'PATCH',
      `/Groups/${group.body.id}`,
      patch([{ op: 'add', path: 'members', value: [{ value: bob.body.id }] }]),
    );
    await expect
      .poll(() => simulator.grantsOf('bob@example.com'), { timeout: 30_000 })
      .toEqual(['enterprise', 'team core']);
    simulator.addRelease('api', 'bob@example.com', 'Deploy 1', new Date(Date.now() - 3 * DAY));
    simulator.addRelease('api', 'heroku-redis@addons.heroku.com', 'Add-on', new Date(Date.now() - DAY));
    // ada deploys now: the audit trail's code_release.create names her as actor.
    simulator.dashboard.deploy('api', 'ada@example.com');
    // The scan binds app ids; releases are read as part of the scan's work.
    await scan();
    expect(await recordReleaseActivity(database, heroku.daemon.resources.connectorFor, tenant.id)).toBe(2);
    await expect
      .poll(
        async () =>
          (
            await database.sql`SELECT kind FROM platform_activity WHERE tenant_id = ${tenant.id} AND account_key = 'ada@example.com'`
          )[0]?.kind,
        { timeout: 30_000 },
      )
      .toMatch(/^(code_release\.create|release)$/);
    // Age the users so that only activity keeps them off the list.
    await database.sql`UPDATE users SET created_at = now() - interval '60 days' WHERE tenant_id = ${tenant.id}`;
    const view = await inactiveSeats(database.db, tenant.id, 1);
    const bobSeat = view.seats.find((s) => s.userName === 'bob@example.com');
    expect(bobSeat?.lastActivity).toMatchObject({ kind: 'release', app: 'api' });
    expect(bobSeat?.flagged).toBe(true);
    expect(view.seats.some((s) => s.userName === 'ada@example.com')).toBe(false);
    expect(view.seats.some((s) => s.userName.includes('addons'))).toBe(false);
    expect(simulator.violations).toEqual([]);
  });
});

describe('audit-trail days', () => {
  it('reads the day before and the day of a poll across midnight UTC, and at most two days after a gap', () => {
    expect(daysBetween(new Date('2026-11-29T23:59:30Z'), new Date('2026-11-30T00:00:30Z'))).toEqual([
      '2026-11-29',
      '2026-11-30',
    ]);
    expect(daysBetween(new Date('2026-11-30T10:00:00Z'), new Date('2026-11-30T10:01:00Z'))).toEqual([
      '2026-11-30',
    ]);
    expect(daysBetween(new Date('2026-11-20T10:00:00Z'), new Date('2026-11-30T10:01:00Z'))).toEqual([
      '2026-11-29',
      '2026-11-30',
    ]);
  });
});

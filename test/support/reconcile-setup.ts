import { randomBytes } from 'node:crypto';
import { afterAll } from 'vitest';
import type { Config } from '../../src/config.js';
import { createTenant } from '../../src/tenants/tenants.js';
import { startTestDaemon, testConfig } from './daemon.js';
import { createTestDatabase } from './database.js';
import { daemonClients } from './http-clients.js';
import { capturingLogger } from './log-capture.js';
import { GROUP, USER } from './scim-fixtures.js';

/**
 * A tenant reconciled end to end on the built-in platform: its own database, a daemon with workers
 * (stopped after the file), and the IdP's and the operator's HTTP clients. Call it at the top of a
 * `describe`.
 */
export async function startReconcileTest(options: { tenant?: string; config?: Partial<Config> } = {}) {
  const tenantName = options.tenant ?? 'acme';
  const database = await createTestDatabase();
  const { tenant, scimToken } = await createTenant(database.db, tenantName, 'test');
  const adminToken = randomBytes(24).toString('hex');
  const daemon = await startTestDaemon({
    mode: 'start',
    config: testConfig(database.url, { adminToken, ...options.config }),
    log: capturingLogger('silent').log,
  });
  afterAll(() => daemon.stop());
  const { scim, admin } = daemonClients(() => `http://127.0.0.1:${daemon.port}`, {
    scimToken,
    adminToken,
  });

  return {
    database,
    tenant,
    scimToken,
    adminToken,
    daemon,
    scim,
    admin,
    /** What the built-in platform grants `account` now: Enterprise Account permissions, teams, apps. */
    platformOf: async (account: string) => {
      const [row] = await database.sql`
        SELECT
          (SELECT permissions::text FROM platform_enterprise_members WHERE tenant_id = ${tenant.id} AND account = ${account}) AS enterprise,
          (SELECT coalesce(json_object_agg(t.name, m.role), '{}') FROM platform_team_members m JOIN teams t ON t.id = m.team_id
            WHERE m.tenant_id = ${tenant.id} AND m.account = ${account}) AS teams,
          (SELECT coalesce(json_object_agg(a.name, c.permissions::text), '{}') FROM platform_app_collaborators c JOIN apps a ON a.id = c.app_id
            WHERE c.tenant_id = ${tenant.id} AND c.account = ${account}) AS apps`;
      return row as {
        enterprise: string | null;
        teams: Record<string, string>;
        apps: Record<string, string>;
      };
    },
    /**
     * Seeds through the API as an operator and an IdP would: `rules` added, then each user created over
     * SCIM and the group created with them as members. Returns the users' and the group's SCIM ids.
     */
    seedGroup: async (group: string, userNames: readonly string[], rules: readonly object[] = []) => {
      for (const rule of rules) {
        const added = await admin('POST', `/tenants/${tenantName}/rules`, rule);
        if (added.status !== 201) throw new Error(`rule not added: ${JSON.stringify(added.body)}`);
      }
      const userIds: string[] = [];
      for (const userName of userNames) {
        userIds.push((await scim('POST', '/Users', { schemas: [USER], userName })).body.id);
      }
      const created = await scim('POST', '/Groups', {
        schemas: [GROUP],
        displayName: group,
        members: userIds.map((value) => ({ value })),
      });
      return { userIds, groupId: created.body.id as string };
    },
  };
}

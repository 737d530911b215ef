import { describe, expect, it } from 'vitest';
import {
  dropEmptyTemplateValues,
  normaliseLegacyManager,
  normaliseLegacyPath,
  normaliseLegacySchemaUrns,
} from '../src/scim/dialects.js';
import { ENTERPRISE, GROUP, json, memberIds, outboxFor, patch, USER } from './support/scim-fixtures.js';
import { startScimServer } from './support/scim-server.js';

/*
 * What OneLogin's SCIM connectors send: the app's "SCIM JSON Template" rendered per user. The v2 Enterprise
 * connector's legacy URNs are from a OneLogin proxy log; the 1.0 templates are OneLogin's developer guide
 * ("Define Your SCIM User Schema"). Unset template parameters render as "" (and the manager's name as " ").
 */
const LEGACY_CORE_2 = 'urn:scim:schemas:core:2.0';
const LEGACY_ENTERPRISE_2 = 'urn:scim:schemas:extension:enterprise:2.0';
const LEGACY_CORE_1 = 'urn:scim:schemas:core:1.0';
const LEGACY_ENTERPRISE_1 = 'urn:scim:schemas:extension:enterprise:1.0';

/** The SCIM v2 Enterprise template rendered for a user with no title, address or manager set. */
function enterpriseV2Body(userName: string, extra: Record<string, unknown> = {}) {
  return {
    schemas: [LEGACY_CORE_2, LEGACY_ENTERPRISE_2],
    userName,
    name: { familyName: 'Lovelace', givenName: 'Ada' },
    title: '',
    emails: [{ value: userName, type: 'work', primary: true }],
    addresses: [{ locality: '', region: '', country: '' }],
    [LEGACY_ENTERPRISE_2]: {
      department: 'Engineering',
      organization: '',
      manager: { value: '', displayName: ' ' },
    },
    ...extra,
  };
}

describe('OneLogin dialect normalisers', () => {
  it('OneLogin: legacy core and enterprise URNs become the RFC 7643 URNs, in schemas and as keys', () => {
    expect(
      normaliseLegacySchemaUrns(
        { schemas: [LEGACY_CORE_1, LEGACY_ENTERPRISE_1], [LEGACY_ENTERPRISE_1]: { department: 'D' } },
        USER,
      ),
    ).toEqual({ schemas: [USER, ENTERPRISE], [ENTERPRISE]: { department: 'D' } });
    expect(normaliseLegacySchemaUrns({ schemas: [LEGACY_CORE_2] }, GROUP)).toEqual({ schemas: [GROUP] });
    expect(normaliseLegacySchemaUrns({ schemas: ['urn:example:other'] }, USER)).toEqual({
      schemas: ['urn:example:other'],
    });
  });

  it('OneLogin: "" and " " from unset template parameters are dropped, with elements left without data', () => {
    expect(
      dropEmptyTemplateValues({
        title: '',
        nickName: ' ',
        emails: [{ value: '', type: 'work', primary: true }],
        addresses: [{ locality: 'Oslo', region: '' }],
        groups: [],
        active: false,
      }),
    ).toEqual({ addresses: [{ locality: 'Oslo' }], groups: [], active: false });
  });

  it('OneLogin: the 1.0 template manager {managerId, displayName} becomes {value, displayName}; no id drops it', () => {
    expect(normaliseLegacyManager({ manager: { managerId: 'm-1', displayName: 'Grace Hopper' } })).toEqual({
      manager: { value: 'm-1', displayName: 'Grace Hopper' },
    });
    expect(normaliseLegacyManager({ department: 'D', manager: { managerId: '', displayName: ' ' } })).toEqual(
      { department: 'D' },
    );
    expect(normaliseLegacyManager({ manager: { value: 'm-2' } })).toEqual({ manager: { value: 'm-2' } });
  });

  it('OneLogin: PATCH paths under the legacy URNs name the RFC attributes', () => {
    expect(normaliseLegacyPath(`${LEGACY_ENTERPRISE_2}:department`)).toBe(`${ENTERPRISE}:department`);
    expect(normaliseLegacyPath(LEGACY_ENTERPRISE_1)).toBe(ENTERPRISE);
    expect(normaliseLegacyPath(`${LEGACY_CORE_2}:title`)).toBe('title');
    expect(normaliseLegacyPath('name.givenName')).toBe('name.givenName');
  });
});

describe('OneLogin', async () => {
  const server = await startScimServer();

  it('creates a user from the SCIM v2 Enterprise template and answers with RFC URNs only', async () => {
    const response = await server.request('POST', '/Users', enterpriseV2Body('ada@example.com'));
    expect(response.status).toBe(201);
    const body = await json(response);
    expect(body.schemas).toEqual([USER, ENTERPRISE]);
    expect(JSON.stringify(body)).not.toContain('urn:scim:schemas');
    expect(body[ENTERPRISE]).toEqual({ department: 'Engineering' });
    expect(body.title).toBeUndefined();
    expect(body.addresses).toBeUndefined();
    expect(body.emails).toEqual([{ value: 'ada@example.com', type: 'work', primary: true }]);
    const again = await json(await server.request('GET', `/Users/${body.id}`));
    expect(again.schemas).toEqual([USER, ENTERPRISE]);
  });

  it('creates a user from the 1.0 enterprise template: a single emails object and manager.managerId', async () => {
    const manager = await json(
      await server.request('POST', '/Users', { schemas: [LEGACY_CORE_1], userName: 'grace@example.com' }),
    );
    const response = await server.request('POST', '/Users', {
      schemas: [LEGACY_CORE_1, LEGACY_ENTERPRISE_1],
      userName: 'alan@example.com',
      name: { familyName: 'Turing', givenName: 'Alan', formatted: 'Alan Turing' },
      emails: { value: 'alan@example.com', type: 'work', primary: 'true' },
      title: 'Researcher',
      [LEGACY_ENTERPRISE_1]: {
        department: 'Research',
        manager: { managerId: manager.id, displayName: 'Grace Hopper' },
      },
    });
    expect(response.status).toBe(201);
    const body = await json(response);
    expect(body.schemas).toEqual([USER, ENTERPRISE]);
    expect(body.emails).toEqual([{ value: 'alan@example.com', type: 'work', primary: true }]);
    expect(body[ENTERPRISE]).toEqual({
      department: 'Research',
      manager: { value: manager.id, displayName: 'Grace Hopper' },
    });
  });

  it('suspends with a PUT of the template and active false: the user is deprovisioned', async () => {
    const created = await json(
      await server.request('POST', '/Users', enterpriseV2Body('leaver@example.com')),
    );
    const response = await server.request(
      'PUT',
      `/Users/${created.id}`,
      enterpriseV2Body('leaver@example.com', { active: false }),
    );
    expect(response.status).toBe(200);
    const body = await json(response);
    expect(body.active).toBe(false);
    expect(body.schemas).toEqual([USER, ENTERPRISE]);
    const outbox = await outboxFor(server, created.id);
    expect(outbox.at(-1)).toMatchObject({ lane: 'deprovision', cause: { event: 'user.deactivated' } });
    const [row] = await server.database.sql`SELECT active FROM users WHERE id = ${created.id}`;
    expect(row?.active).toBe(false);
  });

  it('reactivates with a PUT of active "true" as the template renders it', async () => {
    const created = await json(
      await server.request('POST', '/Users', enterpriseV2Body('returner@example.com', { active: 'false' })),
    );
    expect(created.active).toBe(false);
    const body = await json(
      await server.request(
        'PUT',
        `/Users/${created.id}`,
        enterpriseV2Body('returner@example.com', { active: 'true' }),
      ),
    );
    expect(body.active).toBe(true);
    expect((await outboxFor(server, created.id)).at(-1)).toMatchObject({
      lane: 'reconcile',
      cause: { event: 'user.reactivated' },
    });
  });

  it('patches an enterprise attribute by its legacy-URN path', async () => {
    const created = await json(
      await server.request('POST', '/Users', enterpriseV2Body('patched@example.com')),
    );
    const response = await server.request(
      'PATCH',
      `/Users/${created.id}`,
      patch([
        { op: 'replace', path: `${LEGACY_ENTERPRISE_2}:department`, value: 'Finance' },
        { op: 'replace', value: { [LEGACY_ENTERPRISE_2]: { costCenter: '4130' }, active: false } },
      ]),
    );
    expect(response.status).toBe(200);
    const body = await json(response);
    expect(body[ENTERPRISE]).toEqual({ department: 'Finance', costCenter: '4130' });
    expect(body.active).toBe(false);
    expect((await outboxFor(server, created.id)).at(-1)).toMatchObject({ lane: 'deprovision' });
  });

  it('creates and replaces a group sent with the legacy core URN', async () => {
    const user = await json(await server.request('POST', '/Users', enterpriseV2Body('member@example.com')));
    const response = await server.request('POST', '/Groups', {
      schemas: [LEGACY_CORE_2],
      displayName: 'OneLogin Engineers',
      members: [{ value: user.id }],
    });
    expect(response.status).toBe(201);
    const group = await json(response);
    expect(group.schemas).toEqual([GROUP]);
    const replaced = await server.request('PUT', `/Groups/${group.id}`, {
      schemas: [LEGACY_CORE_2],
      displayName: 'OneLogin Engineers',
      members: [],
    });
    expect(replaced.status).toBe(200);
    expect(await memberIds(server, group.id)).toEqual([]);
  });

  it('refuses a URN nobody sends with an error that says how to fix the template', async () => {
    const response = await server.request('POST', '/Users', {
      schemas: ['urn:scim:schemas:core:3.0'],
      userName: 'typo@example.com',
    });
    expect(response.status).toBe(400);
    const body = await json(response);
    expect(body.scimType).toBe('invalidSyntax');
    expect(body.detail).toContain('urn:scim:schemas:core:3.0');
    expect(body.detail).toContain(USER);
    expect(body.detail).toContain('SCIM JSON Template');
    const [row] = await server.database
      .sql`SELECT count(*)::int AS count FROM users WHERE user_name = 'typo@example.com'`;
    expect(row?.count).toBe(0);
  });
});

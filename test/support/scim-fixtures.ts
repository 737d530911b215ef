import { expect } from 'vitest';
import type { UserPageJson } from '../../src/scim/user-queries.js';
import type { ScimServer } from './scim-server.js';

export const USER = 'urn:ietf:params:scim:schemas:core:2.0:User';
export const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
export const PATCH = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';
export const ENTERPRISE = 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User';

export async function json(response: Response): Promise<Record<string, any>> {
  return (await response.json()) as Record<string, any>;
}

export async function createUser(server: ScimServer, userName: string, extra: Record<string, unknown> = {}) {
  const response = await server.request('POST', '/Users', {
    schemas: [USER],
    userName,
    name: { givenName: 'Given', familyName: 'Family' },
    emails: [{ value: userName, type: 'work', primary: true }],
    active: true,
    ...extra,
  });
  expect(response.status).toBe(201);
  return json(response);
}

export async function createGroup(server: ScimServer, displayName: string, memberIds: string[] = []) {
  const response = await server.request('POST', '/Groups', {
    schemas: [GROUP],
    displayName,
    members: memberIds.map((value) => ({ value })),
  });
  expect(response.status).toBe(201);
  return json(response);
}

export function patch(operations: unknown[]) {
  return { schemas: [PATCH], Operations: operations };
}

/** Outbox rows written for a subject, oldest first: what the reconciler will be told. */
export async function outboxFor(server: ScimServer, subjectId: string) {
  return server.database.sql<{ lane: string; subject_type: string; cause: Record<string, unknown> }[]>`
    SELECT lane, subject_type, cause FROM outbox WHERE subject_id = ${subjectId} ORDER BY id`;
}

export async function memberIds(server: ScimServer, groupId: string): Promise<string[]> {
  const rows = await server.database.sql<{ user_id: string }[]>`
    SELECT user_id::text FROM group_members WHERE group_id = ${groupId} ORDER BY user_id`;
  return rows.map((r) => r.user_id);
}

/** The users of a page `listUsersJson` read, parsed, after checking it counted them right. */
export function usersOfPage(page: UserPageJson): Record<string, any>[] {
  const users =
    page.resources.length === 0
      ? []
      : (JSON.parse(`[${page.resources.toString()}]`) as Record<string, any>[]);
  expect(users).toHaveLength(page.returned);
  return users;
}

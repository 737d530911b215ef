import type { HerokuClient } from './client.js';
import type { HerokuSettings } from './settings.js';

export interface HerokuCheck {
  account: { id: string; email: string; sso: boolean };
  enterpriseAccount: { id: string; name: string };
  members: number;
  /** Each team of the Enterprise Account with the token's own role in it (null: not a member). */
  teams: { name: string; role: string | null }[];
  /** What will go wrong with this token: teams it cannot write, a token that dies within hours. */
  warnings: string[];
  requests: number;
}

/** SSO users' tokens expire 8 hours after login (help.heroku.com/PBGP6IDE). */
const SSO_TOKEN_HOURS = 8;

/**
 * What no public source settles about the Platform API and idsync depends on (REAL-API-NOTES.md §5):
 * a first connection to a real Enterprise Account should check each, with the service account's token.
 */
export const FIRST_CONNECTION_CHECKS: readonly string[] = [
  'GET /teams/{team}/members with `Range: id ..` answers 416 (idsync sorts by email); read `Accept-Ranges` on /enterprise-accounts/{ea}/members, /enterprise-accounts/{ea}/teams, /teams/{team}/apps and /teams/apps/{app}/collaborators',
  'GET /teams/apps/{app}/collaborators on a locked and an unlocked app lists team admins (role admin) and the …@herokumanager.com owner; what DELETE of an admin entry answers',
  "DELETE of a team's last admin: status, `id` and `message`",
  'POST /enterprise-accounts/{ea}/members and /teams/apps/{app}/collaborators for an existing member and for an e-mail with no Heroku account: status, `id` and `message` (idsync expects "is already a member/collaborator" and "Couldn\'t find that user")',
  'POST /enterprise-accounts/{ea}/members with `federated: true` for an existing non-SSO user: does `identity_provider` change? (idsync does not send it)',
  'DELETE /enterprise-accounts/{ea}/members/{user} while the user is still in a team: cascade, refusal or neither; does PUT /teams/{team}/members add the Enterprise Account membership?',
  'PATCH /teams/apps/{app}/collaborators/{user} with `permissions: ["deploy"]`: is `view` added?',
  'the 404 body for a missing team vs a missing member: is a `resource` field present?',
  'GET /enterprise-accounts/{ea}/events with and without `Accept: application/vnd.heroku+json; version=3.audit-trail`: latency, paging, and whether a team membership added on the dashboard shows',
];

/**
 * Verifies the token and shows what it can do: who it is and whether it is under SSO (its tokens then
 * die within 8 hours), the Enterprise Account, its members, and every team with the token's own role
 * (`team.role`, schema): managing a team's members is admin-only (Dev Center enterprise-team-permissions).
 */
export async function checkHeroku(client: HerokuClient, settings: HerokuSettings): Promise<HerokuCheck> {
  const account = (
    await client.request<{ id: string; email: string; federated?: boolean; identity_provider?: unknown }>(
      'GET',
      '/account',
    )
  ).body;
  const sso = account.federated === true || (account.identity_provider ?? null) !== null;
  const enterpriseAccount = (
    await client.request<{ id: string; name: string }>(
      'GET',
      `/enterprise-accounts/${encodeURIComponent(settings.enterpriseAccountId ?? settings.enterpriseAccount)}`,
    )
  ).body;
  const enterprise = encodeURIComponent(enterpriseAccount.id);
  let members = 0;
  for await (const _ of client.list(`/enterprise-accounts/${enterprise}/members`)) members += 1;
  const teams = (
    await client.listAll<{ name: string; role: string | null }>(`/enterprise-accounts/${enterprise}/teams`)
  ).map((t) => ({ name: t.name, role: t.role ?? null }));
  const warnings: string[] = [];
  if (sso) {
    warnings.push(
      `${account.email} signs in through SSO: its tokens expire ${SSO_TOKEN_HOURS} hours after login and idsync then stops; use a dedicated account that is not under SSO`,
    );
  }
  for (const team of teams) {
    if (team.role !== 'admin') {
      warnings.push(
        `not an admin of team ${team.name} (role: ${team.role ?? 'none'}): idsync cannot change its members or app collaborators; make ${account.email} an admin of it`,
      );
    }
  }
  return {
    account: { id: account.id, email: account.email, sso },
    enterpriseAccount: { id: enterpriseAccount.id, name: enterpriseAccount.name },
    members,
    teams,
    warnings,
    requests: client.requests,
  };
}

import type { HerokuClient } from './client.js';
import type { HerokuSettings } from './settings.js';

export interface HerokuCheck {
  account: { id: string; email: string };
  enterpriseAccount: { id: string; name: string };
  members: number;
  teams: string[];
  requests: number;
}

/** Verifies the token and shows what it can see: who it is, the Enterprise Account, members and teams. */
export async function checkHeroku(client: HerokuClient, settings: HerokuSettings): Promise<HerokuCheck> {
  const account = (await client.request<{ id: string; email: string }>('GET', '/account')).body;
  const enterprise = encodeURIComponent(settings.enterpriseAccount);
  const enterpriseAccount = (
    await client.request<{ id: string; name: string }>('GET', `/enterprise-accounts/${enterprise}`)
  ).body;
  let members = 0;
  for await (const _ of client.list(`/enterprise-accounts/${enterprise}/members`)) members += 1;
  const teams = (await client.listAll<{ name: string }>(`/enterprise-accounts/${enterprise}/teams`)).map(
    (t) => t.name,
  );
  return {
    account: { id: account.id, email: account.email },
    enterpriseAccount: { id: enterpriseAccount.id, name: enterpriseAccount.name },
    members,
    teams,
    requests: client.requests,
  };
}

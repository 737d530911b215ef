import { escapeHtml, htmlPage } from '../http/html.js';
import type { Access } from '../reconcile/model.js';

/** The signed-in user's own page: their teams and apps, and their personal API tokens. */
export interface AccountView {
  tenant: string;
  userName: string;
  access: Access;
  tokens: { id: string; label: string | null; scopes: string; createdAt: string; expiresAt: string | null }[];
  /**
   * A change to this user's access is recorded but not yet applied (e.g. right after a JIT login): the
   * platform, and so `access`, does not show it yet.
   */
  applying: boolean;
  newToken?: string;
}

export function accountPage(view: AccountView): string {
  const base = `/sso/${encodeURIComponent(view.tenant)}`;
  const teams = [...view.access.teams].sort(([a], [b]) => a.localeCompare(b));
  const apps = [...view.access.apps].sort(([a], [b]) => a.localeCompare(b));
  // "No teams." would be untrue while a grant is on its way; the page says so instead of guessing.
  const none = (what: string) => (view.applying ? `No ${what} yet.` : `No ${what}.`);
  return htmlPage(
    'Your access',
    `<p>Signed in as <strong id="user">${escapeHtml(view.userName)}</strong></p>
<form method="post" action="${base}/logout"><button type="submit">Sign out</button></form>
${view.applying ? '<p id="applying" class="new">Changes to your access are being applied to the platform; reload this page in a moment to see them.</p>' : ''}
<h2>Teams</h2>
${teams.length ? `<table id="teams"><tr><th>Team</th><th>Role</th></tr>${teams.map(([team, role]) => `<tr><td>${escapeHtml(team)}</td><td>${role}</td></tr>`).join('')}</table>` : `<p id="teams">${none('teams')}</p>`}
<h2>Apps</h2>
${apps.length ? `<table id="apps"><tr><th>App</th><th>Permissions</th></tr>${apps.map(([app, permissions]) => `<tr><td>${escapeHtml(app)}</td><td>${permissions.join(', ')}</td></tr>`).join('')}</table>` : `<p id="apps">${none('apps')}</p>`}
<h2>Personal API tokens</h2>
${view.newToken ? `<div class="new">Your new token, shown only this once:<br><code id="new-token">${escapeHtml(view.newToken)}</code></div>` : ''}
<table id="tokens"><tr><th>Label</th><th>Scopes</th><th>Created</th><th>Expires</th><th></th></tr>
${view.tokens
  .map(
    (t) =>
      `<tr><td>${escapeHtml(t.label ?? '')}</td><td>${escapeHtml(t.scopes)}</td><td>${t.createdAt}</td><td>${t.expiresAt ?? 'never'}</td>
<td><form method="post" action="${base}/me/tokens/${t.id}/revoke"><button type="submit">Revoke</button></form></td></tr>`,
  )
  .join('')}</table>
<form method="post" action="${base}/me/tokens">
<label>Label <input name="label" maxlength="80"></label> <label>Scopes <input name="scopes" placeholder="apps:read apps:deploy"></label>
<button type="submit">Create token</button></form>`,
    '48rem',
  );
}

import { describe, expect, it } from 'vitest';
import { startSsoTest } from './support/sso-setup.js';

describe('SAML single sign-on with JIT provisioning', async () => {
  const { database, tenant, publicUrl, output, sp, browser, createIdp, trust } = await startSsoTest({
    mode: 'start',
  });
  const idp = await createIdp();
  const stranger = await createIdp();
  await trust(idp);
  await database.sql`
    INSERT INTO assignment_rules (tenant_id, idp_group, target, team_name, team_role) VALUES (${tenant.id}, 'Engineering', 'team', 'core', 'member')`;

  const { requestId, post } = browser;
  it('sends the browser from /login to the configured IdP with an AuthnRequest', async () => {
    const response = await fetch(`${publicUrl}/sso/acme/login`, { redirect: 'manual' });
    expect(response.status).toBe(302);
    const location = new URL(response.headers.get('location')!);
    expect(location.origin + location.pathname).toBe(`${idp.entityId}/sso`);
    expect(await requestId()).toMatch(/^_/);
  });
  const counts = async () => {
    const [row] = await database.sql`
      SELECT (SELECT count(*) FROM users)::int AS users, (SELECT count(*) FROM outbox)::int AS outbox,
        (SELECT count(*) FROM tokens WHERE kind = 'session')::int AS sessions`;
    return row;
  };
  const expectRefused = async (samlResponse: string, reason: RegExp) => {
    const before = await counts();
    const response = await post(samlResponse);
    expect(response.status).toBe(403);
    const html = await response.text();
    expect(html).toContain('Sign-in failed');
    const reference = /<code>([^<]+)<\/code>/.exec(html)![1]!;
    expect(output()).toMatch(
      new RegExp(`"reference":"${reference}","reason":"[^"]*(?:${reason.source})`, reason.flags),
    );
    expect(await counts()).toEqual(before);
  };

  it('publishes SP metadata with the ACS URL and entity id', async () => {
    const xml = await (await fetch(`${publicUrl}/sso/acme/metadata`)).text();
    expect(xml).toContain(`entityID="${sp.entityId}"`);
    expect(xml).toContain(`Location="${sp.acsUrl}"`);
  });

  let adaCookie = '';
  it('signs in a new user, creates them from the assertion, starts a session and grants what their groups map to', async () => {
    const response = await post(
      await idp.respond({
        nameId: 'ada@example.com',
        inResponseTo: await requestId(),
        attributes: { firstName: 'Ada', lastName: 'Lovelace', groups: ['Engineering', 'Everyone'] },
      }),
    );
    expect(response.status).toBe(303);
    expect(response.headers.get('location')).toBe(`${publicUrl}/sso/acme/me`);
    const setCookie = response.headers.get('set-cookie')!;
    expect(setCookie).toMatch(/^idsync_session=sess_[0-9a-f]{16}_/);
    expect(setCookie).toContain('HttpOnly');
    expect(setCookie).toContain('SameSite=Lax');
    expect(setCookie).not.toContain('Secure'); // plain-http loopback only
    adaCookie = setCookie.split(';')[0]!;
    const [user] =
      await database.sql`SELECT id, origin, attributes, last_sso_login_at FROM users WHERE user_name = 'ada@example.com'`;
    expect(user).toMatchObject({
      origin: 'saml',
      attributes: { name: { givenName: 'Ada', familyName: 'Lovelace' } },
    });
    expect(user!.last_sso_login_at).not.toBeNull();
    await expect
      .poll(
        async () =>
          (await database.sql`SELECT role FROM platform_team_members WHERE account = 'ada@example.com'`).map(
            (r) => r.role,
          ),
        {
          timeout: 10_000,
        },
      )
      .toEqual(['member']);
    // The reconcile completes its outbox row just after the platform has the grant.
    const me = () =>
      fetch(`${publicUrl}/sso/acme/me`, { headers: { Cookie: adaCookie } }).then((r) => r.text());
    await expect.poll(me, { timeout: 10_000 }).not.toContain('id="applying"');
    const page = await me();
    expect(page).toContain('Signed in as <strong id="user">ada@example.com</strong>');
    expect(page).toMatch(/<td>core<\/td><td>member<\/td>/);
  });

  it('lets a signed-in user create and revoke their own API tokens', async () => {
    const created = await fetch(`${publicUrl}/sso/acme/me/tokens`, {
      method: 'POST',
      headers: { Cookie: adaCookie, 'Content-Type': 'application/x-www-form-urlencoded', Origin: publicUrl },
      // Ada is a member of team core, so her tokens may read teams (and nothing about apps).
      body: 'label=laptop&scopes=teams%3Aread',
    });
    const html = await created.text();
    const token = /<code id="new-token">([^<]+)<\/code>/.exec(html)![1]!;
    expect(token).toMatch(/^api_/);
    const [row] =
      await database.sql`SELECT id::text, label, scopes FROM tokens WHERE kind = 'api' AND label = 'laptop'`;
    expect(row).toMatchObject({ label: 'laptop', scopes: ['teams:read'] });
    const forged = await fetch(`${publicUrl}/sso/acme/me/tokens`, {
      method: 'POST',
      headers: {
        Cookie: adaCookie,
        'Content-Type': 'application/x-www-form-urlencoded',
        Origin: 'https://evil.example',
      },
      body: 'label=evil',
    });
    expect(forged.status).toBe(403);
    await fetch(`${publicUrl}/sso/acme/me/tokens/${row!.id}/revoke`, {
      method: 'POST',
      headers: { Cookie: adaCookie },
      redirect: 'manual',
    });
    const [revoked] = await database.sql`SELECT revoked_at FROM tokens WHERE id = ${row!.id}`;
    expect(revoked!.revoked_at).not.toBeNull();
  });

  it('a cookie with the session’s id but another secret neither signs in nor keeps the session from idling out', async () => {
    const tokenId = /^idsync_session=sess_([0-9a-f]{16})_/.exec(adaCookie)![1]!;
    const lastUsed = async () =>
      (
        await database.sql`SELECT (extract(epoch FROM last_used_at) * 1000)::float8 AS ms FROM tokens WHERE token_id = ${tokenId}`
      )[0]!.ms as number;
    await database.sql`UPDATE tokens SET last_used_at = now() - interval '50 minutes' WHERE token_id = ${tokenId}`;
    const before = await lastUsed();
    const forged = await fetch(`${publicUrl}/sso/acme/me`, {
      headers: { Cookie: `idsync_session=sess_${tokenId}_${'A'.repeat(43)}` },
      redirect: 'manual',
    });
    expect(forged.status).toBe(302);
    expect(forged.headers.get('location')).toContain('/sso/acme/login');
    expect(await lastUsed()).toBe(before);
    const genuine = await fetch(`${publicUrl}/sso/acme/me`, {
      headers: { Cookie: adaCookie },
      redirect: 'manual',
    });
    expect(genuine.status).toBe(200);
    expect(await lastUsed()).toBeGreaterThan(before + 49 * 60_000);
  });

  it('ends the session at once when the IdP deactivates the user through SCIM', async () => {
    await database.sql.begin(async (tx) => {
      const [user] =
        await tx`UPDATE users SET active = false WHERE user_name = 'ada@example.com' RETURNING id::text`;
      await tx`INSERT INTO outbox (tenant_id, lane, subject_type, subject_id, cause)
        VALUES (${tenant.id}, 'deprovision', 'user', ${user!.id}, '{"event":"user.deactivated"}')`;
    });
    const response = await fetch(`${publicUrl}/sso/acme/me`, {
      headers: { Cookie: adaCookie },
      redirect: 'manual',
    });
    expect(response.status).toBe(302);
    expect(response.headers.get('location')).toContain('/sso/acme/login');
    await expect
      .poll(
        async () =>
          (
            await database.sql`SELECT count(*)::int AS n FROM tokens WHERE kind = 'session' AND revoked_at IS NULL`
          )[0]!.n,
        {
          timeout: 10_000,
        },
      )
      .toBe(0);
  });

  it('refuses a replayed assertion', async () => {
    const once = await idp.respond({ nameId: 'replay@example.com', inResponseTo: await requestId() });
    expect((await post(once)).status).toBe(303);
    await expectRefused(once, /InResponseTo|already used/);
  });

  it('refuses an unknown InResponseTo, a wrong audience, destination or recipient, and expired conditions', async () => {
    await expectRefused(
      await idp.respond({ nameId: 'x1@example.com', inResponseTo: '_never-issued' }),
      /InResponseTo/,
    );
    await expectRefused(
      await idp.respond({
        nameId: 'x2@example.com',
        inResponseTo: await requestId(),
        overrides: { Audience: 'https://other.example' },
      }),
      /audience/i,
    );
    await expectRefused(
      await idp.respond({
        nameId: 'x3@example.com',
        inResponseTo: await requestId(),
        overrides: { Destination: 'https://evil.example/acs' },
      }),
      /Destination/,
    );
    await expectRefused(
      await idp.respond({
        nameId: 'x4@example.com',
        inResponseTo: await requestId(),
        overrides: { SubjectRecipient: 'https://evil.example/acs' },
      }),
      /Recipient/,
    );
    const future = new Date(Date.now() + 10 * 60_000).toISOString();
    await expectRefused(
      await idp.respond({
        nameId: 'x6@example.com',
        inResponseTo: await requestId(),
        overrides: { ConditionsNotBefore: future },
      }),
      /not yet valid|NotBefore/i,
    );
    const past = new Date(Date.now() - 10 * 60_000).toISOString();
    await expectRefused(
      await idp.respond({
        nameId: 'x5@example.com',
        inResponseTo: await requestId(),
        overrides: { ConditionsNotOnOrAfter: past, SubjectConfirmationDataNotOnOrAfter: past },
      }),
      /expired|NotOnOrAfter|subject confirmation/i,
    );
  });

  it('refuses an unsigned assertion, a SHA-1 signature and a certificate that is not configured', async () => {
    await expectRefused(
      await idp.respond({ nameId: 'y1@example.com', inResponseTo: await requestId(), signAssertion: false }),
      /sign/i,
    );
    await expectRefused(
      await idp.respond({
        nameId: 'y2@example.com',
        inResponseTo: await requestId(),
        signatureAlgorithm: 'http://www.w3.org/2000/09/xmldsig#rsa-sha1',
      }),
      /sha1|SHA-256/,
    );
    await expectRefused(
      await stranger.respond({ nameId: 'y3@example.com', inResponseTo: await requestId() }),
      /signature/i,
    );
  });

  it('never resurrects a user the IdP deprovisioned through SCIM', async () => {
    await database.sql`INSERT INTO users (tenant_id, user_name, origin, active) VALUES (${tenant.id}, 'off@example.com', 'scim', false)`;
    await expectRefused(
      await idp.respond({ nameId: 'off@example.com', inResponseTo: await requestId() }),
      /deactivated/,
    );
    await database.sql`INSERT INTO users (tenant_id, user_name, origin, active, deprovisioned_at) VALUES (${tenant.id}, 'gone@example.com', 'scim', false, now())`;
    await expectRefused(
      await idp.respond({ nameId: 'gone@example.com', inResponseTo: await requestId() }),
      /deprovisioned/,
    );
  });
});

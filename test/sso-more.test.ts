import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from './support/cli.js';
import { startSsoTest } from './support/sso-setup.js';
import { createTestIdp } from './support/test-idp.js';

const ENTRA_GROUPS = 'http://schemas.microsoft.com/ws/2008/06/identity/claims/groups';
const ENTRA_OVERAGE = 'http://schemas.microsoft.com/claims/groups.link';

describe('SSO configuration, Entra group claims, JIT modes and hostile responses', async () => {
  const { database, tenant, port, publicUrl, sp, browser, createIdp } = await startSsoTest({
    logLevel: 'silent',
  });
  const idp = await createIdp();
  const env = { DATABASE_URL: database.url, PUBLIC_URL: publicUrl };

  const { requestId, post } = browser;
  const userCount = async () => Number((await database.sql`SELECT count(*) AS n FROM users`)[0]!.n);

  it('imports the IdP from its metadata with the CLI, Entra-style group claims by object id', async () => {
    const file = path.join(os.tmpdir(), `idp-${port}.xml`);
    writeFileSync(file, idp.metadata());
    const result = await runCli(
      ['sso', 'import-metadata', file, '--tenant', 'acme', '--groups', 'object-ids'],
      env,
    );
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`saved the identity provider ${idp.entityId} for tenant acme`);
    expect(result.stdout).toContain(`ACS URL:       ${sp.acsUrl}`);
    const [connection] =
      await database.sql`SELECT sso_url, certificates, group_claim_format FROM sso_connections`;
    expect(connection).toMatchObject({ sso_url: `${idp.entityId}/sso`, group_claim_format: 'object-ids' });
    const bad = await runCli(
      ['sso', 'add', '--tenant', 'acme', '--entity-id', 'x', '--sso-url', 'not a url', '--cert', file],
      env,
    );
    expect(bad.code).toBe(64);
  });

  it('maps Entra group object ids to SCIM groups by externalId, and keeps SCIM groups on an overage claim', async () => {
    const [group] = await database.sql`
      INSERT INTO groups (tenant_id, display_name, external_id) VALUES (${tenant.id}, 'Engineering', 'obj-eng') RETURNING id::text`;
    const [other] = await database.sql`
      INSERT INTO groups (tenant_id, display_name, external_id) VALUES (${tenant.id}, 'Sales', 'obj-sales') RETURNING id::text`;
    expect(
      (
        await post(
          await idp.respond({
            nameId: 'grace@example.com',
            inResponseTo: await requestId(),
            attributes: { [ENTRA_GROUPS]: 'obj-eng' },
          }),
        )
      ).status,
    ).toBe(303);
    const groupsOf = async () =>
      (
        await database.sql`SELECT gm.group_id::text AS id FROM group_members gm JOIN users u ON u.id = gm.user_id WHERE u.user_name = 'grace@example.com'`
      ).map((r) => r.id);
    expect(await groupsOf()).toEqual([group!.id]);
    expect(
      (
        await post(
          await idp.respond({
            nameId: 'grace@example.com',
            inResponseTo: await requestId(),
            attributes: { [ENTRA_GROUPS]: ['obj-eng', 'obj-sales'] },
          }),
        )
      ).status,
    ).toBe(303);
    expect((await groupsOf()).sort()).toEqual([group!.id, other!.id].sort());
    // More than 150 groups: Entra sends a link instead; membership is unknown, not empty.
    expect(
      (
        await post(
          await idp.respond({
            nameId: 'grace@example.com',
            inResponseTo: await requestId(),
            attributes: { [ENTRA_OVERAGE]: 'https://graph.microsoft.com/v1.0/users/x/getMemberObjects' },
          }),
        )
      ).status,
    ).toBe(303);
    expect((await groupsOf()).sort()).toEqual([group!.id, other!.id].sort());
    const [audit] =
      await database.sql`SELECT after FROM audit_log WHERE action = 'saml.login' ORDER BY id DESC LIMIT 1`;
    expect(audit!.after).toMatchObject({ groupsOverage: 'kept the groups known from SCIM' });
  });

  it('follows the tenant’s JIT mode: off refuses new users, create does not update existing ones', async () => {
    expect((await runCli(['tenant', 'set', 'acme', '--jit', 'off'], env)).code).toBe(0);
    const before = await userCount();
    expect(
      (await post(await idp.respond({ nameId: 'newcomer@example.com', inResponseTo: await requestId() })))
        .status,
    ).toBe(403);
    expect(await userCount()).toBe(before);
    expect(
      (await post(await idp.respond({ nameId: 'grace@example.com', inResponseTo: await requestId() })))
        .status,
    ).toBe(303);
    const bad = await runCli(['tenant', 'set', 'acme', '--jit', 'sometimes'], env);
    expect(bad.stderr).toContain('--jit takes off, create or create-and-update');
    await runCli(['tenant', 'set', 'acme', '--jit', 'create-and-update'], env);
  });

  it('serves two IdPs for one tenant, each verified with its own certificates', async () => {
    const second = await createTestIdp(sp, 'https://second-idp.example.test');
    await database.sql`
      INSERT INTO sso_connections (tenant_id, idp_entity_id, sso_url, certificates)
      VALUES (${tenant.id}, ${second.entityId}, ${`${second.entityId}/sso`}, ${[second.certificate]})`;
    const login = await fetch(`${publicUrl}/sso/acme/login?idp=${encodeURIComponent(second.entityId)}`, {
      redirect: 'manual',
    });
    expect(new URL(login.headers.get('location')!).origin).toBe('https://second-idp.example.test');
    const id = await requestId(second.entityId);
    expect(
      (await post(await second.respond({ nameId: 'second@example.com', inResponseTo: id }))).status,
    ).toBe(303);
    expect(
      (await post(await idp.respond({ nameId: 'first@example.com', inResponseTo: await requestId() })))
        .status,
    ).toBe(303);
  });

  it('accepts IdP-initiated logins only when the tenant allows them', async () => {
    expect((await post(await idp.respond({ nameId: 'grace@example.com' }))).status).toBe(403);
    expect((await runCli(['tenant', 'set', 'acme', '--idp-initiated', 'on'], env)).code).toBe(0);
    const unsolicited = await idp.respond({ nameId: 'grace@example.com' });
    expect((await post(unsolicited)).status).toBe(303);
    // …and even then each assertion is accepted once.
    expect((await post(unsolicited)).status).toBe(403);
    await runCli(['tenant', 'set', 'acme', '--idp-initiated', 'off'], env);
  });

  it('limits an IdP to e-mail domains (sso add --domains), lists and removes IdPs, and sets the maximum assertion age', async () => {
    const limited = await createTestIdp(sp, 'https://limited-idp.example.test');
    const certificate = path.join(os.tmpdir(), `limited-${port}.pem`);
    writeFileSync(certificate, limited.certificate);
    const added = await runCli(
      [
        'sso',
        'add',
        '--tenant',
        'acme',
        '--entity-id',
        limited.entityId,
        '--sso-url',
        `${limited.entityId}/sso`,
        '--cert',
        certificate,
        '--domains',
        'Example.org, partner.example.net',
      ],
      env,
    );
    expect(added.code).toBe(0);
    const login = async (nameId: string, attributes: Record<string, string> = {}) =>
      post(await limited.respond({ nameId, inResponseTo: await requestId(limited.entityId), attributes }));
    const before = await userCount();
    expect((await login('mallory@evil.example')).status).toBe(403);
    expect((await login('ada@example.org', { email: 'ada@evil.example' })).status).toBe(403);
    expect(await userCount()).toBe(before);
    expect((await login('Ada@EXAMPLE.org')).status).toBe(303);
    expect((await login('bob@partner.example.net')).status).toBe(303);

    const listed = await runCli(['sso', 'list', '--tenant', 'acme'], env);
    expect(listed.code).toBe(0);
    expect(listed.stdout).toMatch(
      /https:\/\/limited-idp\.example\.test\tsso-url=\S+\tgroups=names\tresponse-signed=optional\tdomains=example\.org,partner\.example\.net\tcertificates=sha256:[0-9a-f]{16}\(until \d{4}-\d\d-\d\d\)/,
    );
    const badDomain = await runCli(
      [
        'sso',
        'add',
        '--tenant',
        'acme',
        '--entity-id',
        'x',
        '--sso-url',
        'https://x.example/sso',
        '--cert',
        certificate,
        '--domains',
        'not a domain',
      ],
      env,
    );
    expect(badDomain.code).toBe(64);
    expect(badDomain.stderr).toContain('is not a domain name');

    // A removed IdP can neither answer a login it was sent earlier nor start a new one.
    const pending = await requestId(limited.entityId);
    expect((await runCli(['sso', 'remove', limited.entityId, '--tenant', 'acme'], env)).code).toBe(0);
    expect(
      (await database.sql`SELECT 1 FROM sso_connections WHERE idp_entity_id = ${limited.entityId}`).length,
    ).toBe(0);
    expect(
      (await post(await limited.respond({ nameId: 'carol@example.org', inResponseTo: pending }))).status,
    ).toBe(403);
    const again = await runCli(['sso', 'remove', limited.entityId, '--tenant', 'acme'], env);
    expect(again.code).toBe(65);
    expect(again.stderr).toContain('has no identity provider');
    const start = await fetch(`${publicUrl}/sso/acme/login?idp=${encodeURIComponent(limited.entityId)}`, {
      redirect: 'manual',
    });
    expect(start.status).toBe(403);

    const aged = await runCli(['tenant', 'set', 'acme', '--max-assertion-age', '30'], env);
    expect(aged.code).toBe(0);
    expect(aged.stdout).toContain('max-assertion-age=30m');
    expect((await database.sql`SELECT max_assertion_age_seconds AS s FROM tenants`)[0]!.s).toBe(1800);
    const tooLong = await runCli(['tenant', 'set', 'acme', '--max-assertion-age', '2000'], env);
    expect(tooLong.code).toBe(64);
    expect(tooLong.stderr).toContain('maximum assertion age');
  }, 240_000);

  it('an IdP with --groups none (a partner IdP): its logins grant and withdraw no groups', async () => {
    const partner = await createTestIdp(sp, 'https://partner-idp.example.test');
    const certificate = path.join(os.tmpdir(), `partner-${port}.pem`);
    writeFileSync(certificate, partner.certificate);
    const add = (...settings: string[]) =>
      runCli(
        [
          'sso',
          'add',
          '--tenant',
          'acme',
          '--entity-id',
          partner.entityId,
          '--sso-url',
          `${partner.entityId}/sso`,
          '--cert',
          certificate,
          ...settings,
        ],
        env,
      );
    const login = async (groups: string[]) =>
      post(
        await partner.respond({
          nameId: 'pat@partner.example.org',
          inResponseTo: await requestId(partner.entityId),
          attributes: { groups },
        }),
      );
    const memberships = async () =>
      (
        await database.sql`
          SELECT g.display_name FROM group_members m JOIN groups g ON g.id = m.group_id
          JOIN users u ON u.id = m.user_id WHERE u.user_name = 'pat@partner.example.org' ORDER BY 1`
      ).map((row) => row.display_name);
    // While the connection took group names, a login granted one.
    expect((await add('--domains', 'partner.example.org')).code).toBe(0);
    expect((await login(['Partners'])).status).toBe(303);
    expect(await memberships()).toEqual(['Partners']);

    const none = await add('--groups', 'none', '--slo-url', 'https://partner-idp.example.test/slo');
    expect(none.code).toBe(0);
    expect(none.stdout).toContain('kept from its saved settings: domains=partner.example.org\n');
    // Saved again without the settings (as when a certificate rotates): they are kept, not reset.
    const again = await add();
    expect(again.stdout).toContain(
      'kept from its saved settings: groups=none slo-url=https://partner-idp.example.test/slo domains=partner.example.org\n',
    );
    const saved = async () =>
      (
        await database.sql`
          SELECT group_claim_format, allowed_domains, slo_url FROM sso_connections WHERE idp_entity_id = ${partner.entityId}`
      )[0];
    expect(await saved()).toMatchObject({
      group_claim_format: 'none',
      allowed_domains: ['partner.example.org'],
      slo_url: 'https://partner-idp.example.test/slo',
    });
    expect((await add('--slo-url', '')).code).toBe(0);
    expect(await saved()).toMatchObject({ group_claim_format: 'none', slo_url: null });
    expect((await login(['Admins', 'Console Admins'])).status).toBe(303);
    expect((await login([])).status).toBe(303);
    expect(await memberships()).toEqual(['Partners']);
    expect(
      (await database.sql`SELECT 1 FROM groups WHERE display_name IN ('Admins', 'Console Admins')`).length,
    ).toBe(0);
    const listed = await runCli(['sso', 'list', '--tenant', 'acme'], env);
    expect(listed.stdout).toMatch(/https:\/\/partner-idp\.example\.test\tsso-url=\S+\tgroups=none\t/);
    const unknown = await add('--groups', 'roles');
    expect(unknown.code).toBe(64);
    expect(unknown.stderr).toContain('--groups must be one of names, object-ids, none');
    expect((await runCli(['sso', 'remove', partner.entityId, '--tenant', 'acme'], env)).code).toBe(0);
  }, 240_000);

  it('refuses signature wrapping: an unsigned assertion before or after the signed one, or the signed response wrapped inside an unsigned one', async () => {
    const signed = Buffer.from(
      await idp.respond({ nameId: 'honest@example.com', inResponseTo: await requestId() }),
      'base64',
    ).toString();
    const assertion = /<saml:Assertion[\s\S]*<\/saml:Assertion>/.exec(signed)![0];
    const evil = assertion
      .replace(/<ds:Signature[\s\S]*<\/ds:Signature>/, '')
      .replace(/ID="[^"]+"/, 'ID="_evil"')
      .replace('honest@example.com', 'admin@example.com');
    const before = await userCount();
    const outside = `<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_outer" Version="2.0" IssueInstant="${new Date().toISOString()}" Destination="${sp.acsUrl}"><samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>${evil}<samlp:Extensions>${signed.replace(/^<\?xml[^>]*>/, '')}</samlp:Extensions></samlp:Response>`;
    for (const wrapped of [
      outside,
      signed.replace(assertion, evil + assertion),
      signed.replace(assertion, assertion + evil),
    ]) {
      const response = await post(Buffer.from(wrapped).toString('base64'));
      expect(response.status).toBe(403);
    }
    expect(await userCount()).toBe(before);
    expect(
      (await database.sql`SELECT count(*)::int AS n FROM users WHERE user_name = 'admin@example.com'`)[0]!.n,
    ).toBe(0);
  });

  it('refuses a comment injected into NameID and an XML entity expansion bomb', async () => {
    const signed = Buffer.from(
      await idp.respond({ nameId: 'admin@x.com.evil.com', inResponseTo: await requestId() }),
      'base64',
    ).toString();
    const injected = signed.replace('admin@x.com.evil.com', 'admin@x.com<!---->.evil.com');
    const before = await userCount();
    expect((await post(Buffer.from(injected).toString('base64'))).status).toBe(403);
    const bomb = `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>${signed.replace('<samlp:Response', '<samlp:Response data="&lol3;"')}`;
    expect((await post(Buffer.from(bomb).toString('base64'))).status).toBe(403);
    expect(await userCount()).toBe(before);
  });
});

import { randomBytes } from 'node:crypto';
import { Validator } from '@seriousme/openapi-schema-validator';
import { Ajv2020 } from 'ajv/dist/2020.js';
import type { Router } from 'express';
import { afterAll, describe, expect, it } from 'vitest';
import { createApp } from '../src/http/app.js';
import { edgeMounts } from '../src/runtime/daemon.js';
import { ScimTokenVerifier } from '../src/tenants/scim-token-cache.js';
import { createTenant } from '../src/tenants/tenants.js';
import { startTestDaemon, testConfig } from './support/daemon.js';
import { createTestDatabase } from './support/database.js';
import { capturingLogger } from './support/log-capture.js';
import { USER } from './support/scim-fixtures.js';

const ADMIN = randomBytes(24).toString('hex');
/** Browser edges (SAML pages, the HTML console): not part of the API contract, by design. */
const BROWSER_EDGES = new Set(['/sso', '/console']);

interface Layer {
  route?: { path: string; methods: Record<string, boolean> };
}

/** Every `METHOD path` an express router declares, in OpenAPI's path syntax. */
function routesOf(prefix: string, router: Router): string[] {
  return (router.stack as Layer[]).flatMap((layer) =>
    layer.route
      ? Object.keys(layer.route.methods)
          .filter((m) => m !== '_all')
          .map(
            (m) =>
              `${m} ${prefix.replace(/\/$/, '')}${layer.route!.path === '/' ? '' : layer.route!.path.replace(/:(\w+)/g, '{$1}')}`,
          )
      : [],
  );
}

describe('the OpenAPI 3.1 contract', async () => {
  const database = await createTestDatabase();
  const { scimToken } = await createTenant(database.db, 'acme', 'test');
  const { log } = capturingLogger('silent');
  const daemon = await startTestDaemon({
    mode: 'start',
    config: testConfig(database.url, { adminToken: ADMIN, secretKey: 'o'.repeat(40) }),
    log,
  });
  afterAll(() => daemon.stop());
  const base = `http://127.0.0.1:${daemon.port}`;
  const document = (await (await fetch(`${base}/api/openapi.json`)).json()) as {
    openapi: string;
    paths: Record<
      string,
      Record<string, { responses: Record<string, { content?: Record<string, { schema: object }> }> }>
    >;
  };

  it('is served without a credential and is a valid OpenAPI 3.1 document', async () => {
    expect(document.openapi).toBe('3.1.0');
    const result = await new Validator().validate(document as unknown as Record<string, unknown>);
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
  });

  it('documents every route the HTTP app mounts (SSO and console pages aside)', () => {
    const mounts = edgeMounts({
      resources: daemon.resources,
      tokens: new ScimTokenVerifier(daemon.resources.database),
      redis: undefined as never,
    });
    const app = createApp({ log, readiness: [], mounts });
    const declared = [
      ...routesOf('', app.router as unknown as Router),
      ...mounts
        .filter((m) => !BROWSER_EDGES.has(m.path))
        .flatMap((m) => routesOf(m.path, m.router as Router)),
    ];
    expect(declared.length).toBeGreaterThan(40);
    const documented = new Set(
      Object.entries(document.paths).flatMap(([path, item]) => Object.keys(item).map((m) => `${m} ${path}`)),
    );
    expect(declared.filter((r) => !documented.has(r))).toEqual([]);
    // And nothing documented that the app does not serve.
    expect([...documented].filter((r) => !declared.includes(r))).toEqual([]);
  });

  describe('real responses match the document', () => {
    const ajv = new Ajv2020({ strict: false, validateFormats: false });
    const check = async (method: string, path: string, template: string, token: string, body?: unknown) => {
      const response = await fetch(`${base}${path}`, {
        method: method.toUpperCase(),
        headers: {
          Authorization: `Bearer ${token}`,
          'Content-Type': path.startsWith('/scim') ? 'application/scim+json' : 'application/json',
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const operation = document.paths[template]![method]!;
      const described = operation.responses[String(response.status)] ?? operation.responses.default!;
      const payload = response.status === 204 ? undefined : await response.json();
      const schema = described.content ? Object.values(described.content)[0]!.schema : undefined;
      if (schema) {
        const validate = ajv.compile(schema);
        expect(
          validate(payload),
          `${method} ${path} ${response.status}: ${ajv.errorsText(validate.errors)}`,
        ).toBe(true);
      } else {
        expect(payload).toBeUndefined();
      }
      return { status: response.status, body: payload as any };
    };

    it('webhooks: add, list, deliveries, remove, and an error', async () => {
      const added = await check(
        'post',
        '/api/tenants/acme/webhooks',
        '/api/tenants/{tenant}/webhooks',
        ADMIN,
        {
          url: 'https://alerts.example.com/idsync',
          events: ['brake.held'],
        },
      );
      expect(added.status).toBe(201);
      expect(
        (await check('get', '/api/tenants/acme/webhooks', '/api/tenants/{tenant}/webhooks', ADMIN)).status,
      ).toBe(200);
      const deliveries = '/api/tenants/{tenant}/webhooks/deliveries';
      expect((await check('get', '/api/tenants/acme/webhooks/deliveries', deliveries, ADMIN)).status).toBe(
        200,
      );
      const refused = await check(
        'post',
        '/api/tenants/acme/webhooks',
        '/api/tenants/{tenant}/webhooks',
        ADMIN,
        {
          url: 'gopher://x',
          events: ['brake.held'],
        },
      );
      expect(refused.status).toBe(400);
      expect(
        (
          await check(
            'delete',
            `/api/tenants/acme/webhooks/${added.body.id}`,
            '/api/tenants/{tenant}/webhooks/{id}',
            ADMIN,
          )
        ).status,
      ).toBe(204);
    });

    it('admin tokens, rules, held changes and a scan', async () => {
      const token = await check('post', '/api/admin-tokens', '/api/admin-tokens', ADMIN, {
        name: 'ops',
        role: 'operator',
      });
      expect(token.status).toBe(201);
      const badRole = await check('post', '/api/admin-tokens', '/api/admin-tokens', ADMIN, {
        name: 'x',
        role: 'root',
      });
      expect(badRole.status).toBe(400);
      expect(badRole.body.error.message).toBe('"role" must be one of auditor, operator, owner');
      expect((await check('get', '/api/admin-tokens', '/api/admin-tokens', ADMIN)).status).toBe(200);
      const rule = await check('post', '/api/tenants/acme/rules', '/api/tenants/{tenant}/rules', ADMIN, {
        target: 'enterprise',
        idpGroup: 'Everyone',
        permissions: ['view'],
      });
      expect(rule.status).toBe(201);
      expect(
        (await check('get', '/api/tenants/acme/rules', '/api/tenants/{tenant}/rules', ADMIN)).status,
      ).toBe(200);
      expect(
        (await check('get', '/api/tenants/acme/changes', '/api/tenants/{tenant}/changes', ADMIN)).status,
      ).toBe(200);
      expect(
        (await check('post', '/api/tenants/acme/drift/scan', '/api/tenants/{tenant}/drift/scan', ADMIN))
          .status,
      ).toBe(202);
      expect(
        (await check('get', '/api/tenants/nope/rules', '/api/tenants/{tenant}/rules', ADMIN)).status,
      ).toBe(404);
    });

    it('SCIM: create, read and an error in SCIM’s format', async () => {
      const user = await check('post', '/scim/v2/Users', '/scim/v2/Users', scimToken, {
        schemas: [USER],
        userName: 'ada@example.com',
      });
      expect(user.status).toBe(201);
      expect(
        (await check('get', `/scim/v2/Users/${user.body.id}`, '/scim/v2/Users/{id}', scimToken)).status,
      ).toBe(200);
      expect((await check('get', '/scim/v2/Users/nope', '/scim/v2/Users/{id}', scimToken)).status).toBe(404);
    });
  });
});

import { OpenAPIRegistry, OpenApiGeneratorV31 } from '@asteasolutions/zod-to-openapi';
import { type RequestHandler, Router } from 'express';
import { z } from 'zod';
import {
  createAdminTokenBodySchema,
  createClientBodySchema,
  deliveriesQuerySchema,
  issueTokenBodySchema,
  sinceLastScanQuerySchema,
  sinceLastScanSchema,
} from '../admin/schemas.js';
import {
  createdWebhookSchema,
  webhookDeliverySchema,
  webhookEndpointSchema,
  webhookInputSchema,
} from '../alerts/endpoints.js';
import { HTTP_STATUS } from '../errors.js';
import { activityInputSchema } from '../platform/activity.js';
import { ruleSourceSchema, ruleTargetSchema } from '../reconcile/rules.js';

/** Where the API edges are mounted (src/runtime/daemon.ts): the document's paths start with these. */
export const API_MOUNTS = { admin: '/api', oauth: '/oauth', scim: '/scim/v2' } as const;

/** The contract's own path (served before the admin API's authentication: it holds no data). */
export const OPENAPI_PATH = '/api/openapi.json';

type Method = 'get' | 'post' | 'put' | 'patch' | 'delete';

const registry = new OpenAPIRegistry();
registry.registerComponent('securitySchemes', 'adminToken', {
  type: 'http',
  scheme: 'bearer',
  description: 'IDSYNC_ADMIN_TOKEN or an `idsync admin-token create` token; each route names its least role',
});
registry.registerComponent('securitySchemes', 'scimToken', {
  type: 'http',
  scheme: 'bearer',
  description: "the tenant's SCIM token (`idsync tenant create` / `rotate-token`)",
});
registry.registerComponent('securitySchemes', 'oauthClient', {
  type: 'http',
  scheme: 'basic',
  description: 'an introspection client (`idsync client create`): client_id and client_secret',
});

const jsonError = z.object({
  error: z.object({
    code: z.enum(Object.keys(HTTP_STATUS) as [string, ...string[]]),
    message: z.string(),
    requestId: z.string().optional(),
  }),
});
const scimError = z.looseObject({
  schemas: z.array(z.string()),
  status: z.string(),
  detail: z.string().optional(),
});
const anyObject = z.looseObject({});
const json = (schema: z.ZodType) => ({ 'application/json': { schema } });

interface Route {
  method: Method;
  path: string;
  summary: string;
  /** The least admin role (admin API), or the credential of the other edges. */
  role?: 'auditor' | 'operator' | 'owner';
  body?: z.ZodType;
  query?: z.ZodObject;
  /** Success status and body schema (none: no body). */
  ok: [number, z.ZodType | undefined];
  csv?: boolean;
  /** Request media types other than the edge's JSON (an upload). */
  bodyMediaTypes?: string[];
  /** Other success statuses with the same body. */
  alsoOk?: number[];
}

const ADMIN_ROUTES: Route[] = [
  {
    method: 'get',
    path: '/tenants/{tenant}/rules',
    summary: 'List assignment rules',
    role: 'operator',
    ok: [200, z.object({ rules: z.array(anyObject) })],
  },
  {
    method: 'post',
    path: '/tenants/{tenant}/rules',
    summary: 'Add an assignment rule',
    role: 'operator',
    body: z.intersection(ruleSourceSchema, ruleTargetSchema),
    ok: [201, anyObject],
  },
  {
    method: 'delete',
    path: '/tenants/{tenant}/rules/{id}',
    summary: 'Remove an assignment rule',
    role: 'operator',
    ok: [204, undefined],
  },
  {
    method: 'post',
    path: '/tenants/{tenant}/imports',
    summary:
      'Import assignments from a CSV: the body as text/csv or one file of a multipart form (201 when applied, 200 for a dry run)',
    role: 'operator',
    body: z.string(),
    bodyMediaTypes: ['text/csv', 'multipart/form-data'],
    query: z.object({
      dryRun: z.string().optional(),
      skipInvalid: z.string().optional(),
      replace: z.string().optional(),
    }),
    ok: [201, anyObject],
    alsoOk: [200],
  },
  {
    method: 'post',
    path: '/tenants/{tenant}/activity',
    summary: "Record what platform accounts did (the built-in platform's feed for the seat audit)",
    role: 'operator',
    body: activityInputSchema,
    ok: [202, z.object({ recorded: z.number().int() })],
  },
  {
    method: 'get',
    path: '/tenants/{tenant}/users/{id}/receipt',
    summary: "A user's latest offboarding receipt",
    role: 'auditor',
    ok: [200, anyObject],
  },
  {
    method: 'post',
    path: '/tenants/{tenant}/users/{id}/tokens',
    summary: 'Issue a personal API token',
    role: 'owner',
    body: issueTokenBodySchema,
    ok: [201, anyObject],
  },
  {
    method: 'get',
    path: '/tenants/{tenant}/changes',
    summary: 'Changes held by the mass-change brake',
    role: 'operator',
    ok: [200, z.object({ changes: z.array(anyObject) })],
  },
  {
    method: 'post',
    path: '/tenants/{tenant}/changes/{id}/approve',
    summary: 'Approve a held change',
    role: 'operator',
    ok: [200, z.object({ approved: z.string(), usersQueued: z.number().int() })],
  },
  {
    method: 'get',
    path: '/tenants/{tenant}/users/{id}/plan',
    summary: 'What a reconcile would do for a user (id or userName)',
    role: 'operator',
    ok: [200, anyObject],
  },
  {
    method: 'get',
    path: '/tenants/{tenant}/clients',
    summary: 'Introspection clients',
    role: 'owner',
    ok: [200, z.object({ clients: z.array(anyObject) })],
  },
  {
    method: 'post',
    path: '/tenants/{tenant}/clients',
    summary: 'Create an introspection client (secret shown once)',
    role: 'owner',
    body: createClientBodySchema,
    ok: [201, anyObject],
  },
  {
    method: 'post',
    path: '/tenants/{tenant}/clients/{name}/rotate',
    summary: "Rotate a client's secret",
    role: 'owner',
    ok: [200, anyObject],
  },
  {
    method: 'delete',
    path: '/tenants/{tenant}/clients/{name}',
    summary: 'Remove an introspection client',
    role: 'owner',
    ok: [204, undefined],
  },
  {
    method: 'get',
    path: '/admin-tokens',
    summary: 'Admin tokens (never their secrets)',
    role: 'owner',
    ok: [200, z.object({ tokens: z.array(anyObject) })],
  },
  {
    method: 'post',
    path: '/admin-tokens',
    summary: 'Create an admin token (shown once)',
    role: 'owner',
    body: createAdminTokenBodySchema,
    ok: [201, z.looseObject({ token: z.string(), name: z.string() })],
  },
  {
    method: 'delete',
    path: '/admin-tokens/{name}',
    summary: 'Revoke an admin token',
    role: 'owner',
    ok: [204, undefined],
  },
  {
    method: 'get',
    path: '/tenants/{tenant}/drift',
    summary: 'The latest drift report (JSON or ?format=csv)',
    role: 'auditor',
    ok: [200, anyObject],
    csv: true,
  },
  {
    method: 'post',
    path: '/tenants/{tenant}/drift/scan',
    summary: 'Queue a drift scan',
    role: 'operator',
    ok: [202, z.object({ queued: z.literal(true) })],
  },
  {
    method: 'get',
    path: '/tenants/{tenant}/drift/verify',
    summary: "Verify the drift reports' hash chain",
    role: 'auditor',
    ok: [200, anyObject],
  },
  {
    method: 'get',
    path: '/tenants/{tenant}/drift/since-last-scan',
    summary:
      'Access granted outside idsync that the audit-trail poll found since the latest scan started (newest first, paged)',
    role: 'auditor',
    query: sinceLastScanQuerySchema,
    ok: [200, sinceLastScanSchema],
  },
  {
    method: 'get',
    path: '/tenants/{tenant}/drift/{id}',
    summary: 'One drift report (JSON or ?format=csv)',
    role: 'auditor',
    ok: [200, anyObject],
    csv: true,
  },
  {
    method: 'get',
    path: '/tenants/{tenant}/drift/{id}/difference',
    summary: 'What changed since the previous report',
    role: 'auditor',
    ok: [200, anyObject],
  },
  {
    method: 'get',
    path: '/tenants/{tenant}/offboarding',
    summary: 'Offboardings and time to effect (JSON or ?format=csv)',
    role: 'auditor',
    ok: [200, anyObject],
    csv: true,
  },
  {
    method: 'get',
    path: '/tenants/{tenant}/seats/inactive',
    summary: 'Seats without a recent SSO login (JSON or ?format=csv)',
    role: 'auditor',
    ok: [200, anyObject],
    csv: true,
  },
  {
    method: 'get',
    path: '/tenants/{tenant}/webhooks',
    summary: "The tenant's webhook endpoints (never their secrets)",
    role: 'auditor',
    ok: [200, z.object({ webhooks: z.array(webhookEndpointSchema) })],
  },
  {
    method: 'post',
    path: '/tenants/{tenant}/webhooks',
    summary: 'Add a webhook endpoint (its signing secret is shown once)',
    role: 'owner',
    body: webhookInputSchema,
    ok: [201, createdWebhookSchema],
  },
  {
    method: 'delete',
    path: '/tenants/{tenant}/webhooks/{id}',
    summary: 'Stop sending to a webhook endpoint',
    role: 'owner',
    ok: [204, undefined],
  },
  {
    method: 'get',
    path: '/tenants/{tenant}/webhooks/deliveries',
    summary: 'Recent webhook deliveries and their outcome',
    role: 'auditor',
    query: deliveriesQuerySchema,
    ok: [200, z.object({ deliveries: z.array(webhookDeliverySchema) })],
  },
];

const SCIM_ROUTES: Route[] = [
  {
    method: 'get',
    path: '/ServiceProviderConfig',
    summary: 'SCIM service provider configuration',
    ok: [200, anyObject],
  },
  { method: 'get', path: '/ResourceTypes', summary: 'SCIM resource types', ok: [200, anyObject] },
  { method: 'get', path: '/ResourceTypes/{id}', summary: 'One SCIM resource type', ok: [200, anyObject] },
  { method: 'get', path: '/Schemas', summary: 'SCIM schemas', ok: [200, anyObject] },
  { method: 'get', path: '/Schemas/{id}', summary: 'One SCIM schema', ok: [200, anyObject] },
  { method: 'get', path: '/Users', summary: 'List or filter users', ok: [200, anyObject] },
  { method: 'post', path: '/Users', summary: 'Create a user', body: anyObject, ok: [201, anyObject] },
  { method: 'get', path: '/Users/{id}', summary: 'One user', ok: [200, anyObject] },
  { method: 'put', path: '/Users/{id}', summary: 'Replace a user', body: anyObject, ok: [200, anyObject] },
  {
    method: 'patch',
    path: '/Users/{id}',
    summary: 'Patch a user (PatchOp)',
    body: anyObject,
    ok: [200, anyObject],
  },
  { method: 'delete', path: '/Users/{id}', summary: 'Delete a user (offboards)', ok: [204, undefined] },
  { method: 'get', path: '/Groups', summary: 'List or filter groups', ok: [200, anyObject] },
  { method: 'post', path: '/Groups', summary: 'Create a group', body: anyObject, ok: [201, anyObject] },
  { method: 'get', path: '/Groups/{id}', summary: 'One group', ok: [200, anyObject] },
  { method: 'put', path: '/Groups/{id}', summary: 'Replace a group', body: anyObject, ok: [200, anyObject] },
  {
    method: 'patch',
    path: '/Groups/{id}',
    summary: 'Patch a group (PatchOp)',
    body: anyObject,
    ok: [200, anyObject],
  },
  { method: 'delete', path: '/Groups/{id}', summary: 'Delete a group', ok: [204, undefined] },
];

const tokenParameter = z.object({ token: z.string(), token_type_hint: z.string().optional() });
const OAUTH_ROUTES: Route[] = [
  {
    method: 'post',
    path: '/introspect',
    summary: 'RFC 7662 token introspection',
    body: tokenParameter,
    ok: [200, z.looseObject({ active: z.boolean() })],
  },
  {
    method: 'post',
    path: '/revoke',
    summary: 'RFC 7009 token revocation',
    body: tokenParameter,
    ok: [200, undefined],
  },
];

const parametersOf = (path: string) => {
  const names = [...path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!);
  return names.length > 0 ? z.object(Object.fromEntries(names.map((n) => [n, z.string()]))) : undefined;
};

function register(prefix: string, routes: Route[], edge: 'admin' | 'scim' | 'oauth'): void {
  const errorSchema = edge === 'scim' ? scimError : jsonError;
  const mediaType = edge === 'scim' ? 'application/scim+json' : 'application/json';
  for (const route of routes) {
    const params = parametersOf(route.path);
    const [status, schema] = route.ok;
    const success = {
      description: 'success',
      ...(schema
        ? {
            content: {
              [mediaType]: { schema },
              ...(route.csv ? { 'text/csv': { schema: z.string() } } : {}),
            },
          }
        : {}),
    };
    registry.registerPath({
      method: route.method,
      path: `${prefix}${route.path}`,
      summary: route.summary,
      tags: [edge],
      ...(route.role ? { description: `Least admin role: ${route.role}.` } : {}),
      security: [{ [edge === 'admin' ? 'adminToken' : edge === 'scim' ? 'scimToken' : 'oauthClient']: [] }],
      request: {
        ...(params ? { params } : {}),
        ...(route.query ? { query: route.query } : {}),
        ...(route.body
          ? {
              body: {
                content: Object.fromEntries(
                  (
                    route.bodyMediaTypes ?? [
                      edge === 'oauth' ? 'application/x-www-form-urlencoded' : mediaType,
                    ]
                  ).map((type) => [type, { schema: route.body! }]),
                ),
              },
            }
          : {}),
      },
      responses: {
        ...Object.fromEntries([status, ...(route.alsoOk ?? [])].map((code) => [code, success])),
        default: {
          description: 'an error in the edge’s own format',
          content: { [mediaType]: { schema: errorSchema } },
        },
      },
    });
  }
}

register(API_MOUNTS.admin, ADMIN_ROUTES, 'admin');
register(API_MOUNTS.scim, SCIM_ROUTES, 'scim');
register(API_MOUNTS.oauth, OAUTH_ROUTES, 'oauth');
registry.registerPath({
  method: 'get',
  path: OPENAPI_PATH,
  summary: 'This document (OpenAPI 3.1)',
  responses: { 200: { description: 'the document', content: json(anyObject) } },
});
registry.registerPath({
  method: 'get',
  path: '/metrics',
  summary: 'Prometheus metrics (text exposition format); Bearer METRICS_TOKEN unless METRICS_OPEN=true',
  responses: {
    200: { description: 'the metrics', content: { 'text/plain': { schema: z.string() } } },
    401: { description: 'missing or wrong token', content: json(anyObject) },
    403: { description: 'no METRICS_TOKEN configured and METRICS_OPEN is not set', content: json(anyObject) },
  },
});
const health = z.object({ status: z.string() });
registry.registerPath({
  method: 'get',
  path: '/healthz',
  summary: 'Liveness',
  responses: { 200: { description: 'alive', content: json(health) } },
});
registry.registerPath({
  method: 'get',
  path: '/readyz',
  summary: 'Readiness of PostgreSQL and Redis',
  responses: {
    200: {
      description: 'ready or degraded',
      content: json(z.object({ status: z.string(), checks: z.record(z.string(), z.string()) })),
    },
    503: {
      description: 'not ready',
      content: json(z.object({ status: z.string(), checks: z.record(z.string(), z.string()) })),
    },
  },
});

let document: ReturnType<OpenApiGeneratorV31['generateDocument']> | undefined;

/** The OpenAPI 3.1 document of the admin API, the token endpoints and SCIM, built once. */
export function openApiDocument() {
  document ??= new OpenApiGeneratorV31(registry.definitions).generateDocument({
    openapi: '3.1.0',
    info: {
      title: 'idsync',
      version: '1',
      description:
        'Admin API, OAuth token endpoints and SCIM 2.0 of idsync. The SSO (SAML) and console routes are browser pages and are not part of this contract.',
    },
  });
  return document;
}

/** Serves the document; it describes shapes only, so it needs no credential. */
export function openApiRouter(): RequestHandler {
  const router = Router();
  router.get('/', (_req, res) => {
    res.json(openApiDocument());
  });
  return router;
}

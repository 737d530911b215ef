import type { SQL } from 'drizzle-orm';
import { type NextFunction, type Request, type Response, Router } from 'express';
import type { Database } from '../db/client.js';
import { boundedInteger, jsonBody, refuseHostileText } from '../http/hostile-input.js';
import { measureScimRequests } from '../metrics/scim-requests.js';
import type { ScimTokenVerifier } from '../tenants/scim-token-cache.js';
import type { Tenant } from '../tenants/tenants.js';
import { ScimError, scimErrorHandler, sendScimError } from './errors.js';
import { type FilterNode, parseFilter } from './filter.js';
import { filterToSql, userMapping, userNameEquality } from './filter-sql.js';
import {
  createGroup,
  deleteGroup,
  findGroup,
  listGroups,
  MAX_MEMBERS_PER_REQUEST,
  membersOfGroups,
  patchGroup,
  readGroupInput,
  renderGroup,
  replaceGroup,
} from './groups.js';
import { refuseNullElements } from './limits.js';
import { MAX_PATCH_OPERATIONS, readPatchRequest } from './patch.js';
import { isProjected, type Projection, project, projectionKeeps, readProjection } from './projection.js';
import {
  ENTERPRISE_USER_SCHEMA,
  enterpriseAttributes,
  GROUP_SCHEMA,
  groupAttributes,
  LIST_RESPONSE_SCHEMA,
  resourceTypeDocuments,
  schemaDocuments,
  USER_SCHEMA,
  userAttributes,
} from './schemas.js';
import { findUserJson, listUsersJson, userCreator } from './user-queries.js';
import {
  deleteUser,
  etagOf,
  isUuid,
  patchUser,
  type RequestContext,
  readUserInput,
  replaceUser,
} from './users.js';

/** A process-local name for each client connection (a keep-alive socket), for page walks. */
const connectionIds = new WeakMap<object, string>();
let connectionsSeen = 0;
function connectionIdOf(socket: object): string {
  let id = connectionIds.get(socket);
  if (id === undefined) {
    connectionsSeen += 1;
    id = String(connectionsSeen);
    connectionIds.set(socket, id);
  }
  return id;
}

/*
 * The SCIM 2.0 edge: each handler reads as authenticate → parse and normalise → one store call → render.
 * Errors of any kind become SCIM error JSON in scimErrorHandler, the one place that formats them.
 */

export const MAX_PAGE_SIZE = 1000;
const BODY_LIMIT = '1mb';
const SCIM_CONTENT_TYPE = 'application/scim+json; charset=utf-8';

interface ScimLocals {
  tenant: Tenant;
}

const USER_PROJECTION = {
  core: USER_SCHEMA,
  extensions: [ENTERPRISE_USER_SCHEMA],
  catalogs: new Map([
    [USER_SCHEMA, userAttributes],
    [ENTERPRISE_USER_SCHEMA, enterpriseAttributes],
  ]),
};
const GROUP_PROJECTION = {
  core: GROUP_SCHEMA,
  extensions: [],
  catalogs: new Map([[GROUP_SCHEMA, groupAttributes]]),
};

export interface ScimRouterOptions {
  db: Database;
  /**
   * A small pool for reads that are one short statement: a user by id, a `userName eq` lookup, a page
   * that reads few users (see listUsersJson). Busy, it pipelines them (see PIPELINED_READ_CONNECTIONS).
   * The answer to a write re-reads on the main pool: a committed write is not answered 500 because the
   * other pool is short of a connection.
   */
  pipelinedReads: Database;
  /** A small pool for unfiltered pages by offset past the first users (see PAGE_SCAN_CONNECTIONS). */
  pageScans: Database;
  tokens: ScimTokenVerifier;
  /** Absolute base URL of this router, e.g. https://idsync.example.com/scim/v2 (for meta.location). */
  baseUrl: string;
}

export function scimRouter(options: ScimRouterOptions): Router {
  const { db, pipelinedReads, pageScans, baseUrl, tokens } = options;
  const createUser = userCreator(db, baseUrl);
  // Resource names route case-insensitively (`/users` works), as Microsoft's own server does.
  const router = Router({ caseSensitive: false, strict: false });

  router.use(measureScimRequests);
  router.use((_req, res, next) => {
    // A constant, not res.type(): that looks the type up in the MIME table on every request.
    res.setHeader('Content-Type', SCIM_CONTENT_TYPE);
    next();
  });
  // The token before the body: a caller without one is refused without its body being read or parsed.
  router.use(authenticate(tokens));
  router.use(
    jsonBody({
      limit: BODY_LIMIT,
      type: ['application/json', 'application/scim+json', 'application/*+json'],
    }),
  );
  router.use(refuseHostileText);
  router.use((req, _res, next) => {
    refuseNullElements(req.body);
    next();
  });

  router.get('/ServiceProviderConfig', (_req, res) => {
    res.json(serviceProviderConfig(baseUrl));
  });
  router.get('/ResourceTypes', (_req, res) => {
    const resources = resourceTypeDocuments(baseUrl);
    res.json(listResponse(resources, resources.length, 1));
  });
  router.get('/ResourceTypes/:id', (req, res) => {
    const found = resourceTypeDocuments(baseUrl).find(
      (r) => r.id.toLowerCase() === String(req.params.id).toLowerCase(),
    );
    if (!found) throw new ScimError(404, undefined, `ResourceType ${req.params.id} not found`);
    res.json(found);
  });
  router.get('/Schemas', (_req, res) => {
    const schemas = schemaDocuments(baseUrl);
    res.json(listResponse(schemas, schemas.length, 1));
  });
  router.get('/Schemas/:id', (req, res) => {
    const found = schemaDocuments(baseUrl).find(
      (s) => s.id.toLowerCase() === String(req.params.id).toLowerCase(),
    );
    if (!found) throw new ScimError(404, undefined, `Schema ${req.params.id} not found`);
    res.json(found);
  });

  /** GET, PUT and PATCH all answer with the user as stored now, rendered by PostgreSQL. */
  const respondWithUser = async (
    req: Request,
    res: Response,
    tenantId: string,
    id: string,
    pool: Database = db,
  ) =>
    sendUserJson(res, 200, await userJsonOrNotFound(pool, tenantId, id, baseUrl), readProjection(req.query));

  // Users
  router.get('/Users', async (req, res) => {
    const { tenant } = locals(res);
    const query = readListQuery(req);
    const where = query.filter ? userNameFilter(query.filter) : undefined;
    const page = await listUsersJson(
      { main: db, pipelined: pipelinedReads, pageScans },
      tenant.id,
      where,
      query,
      baseUrl,
      projectionKeeps(query.projection, 'groups'),
      connectionIdOf(req.socket),
    );
    // Fast path: PostgreSQL rendered each resource; unprojected lists are spliced, not re-parsed.
    const resources = isProjected(query.projection)
      ? page.resources.map((text) =>
          JSON.stringify(project(JSON.parse(text), query.projection, USER_PROJECTION)),
        )
      : page.resources;
    res.send(listResponseText(resources, page.total, query.startIndex));
  });
  router.post('/Users', async (req, res) => {
    const { tenant } = locals(res);
    const input = readUserInput(req.body);
    const created = await createUser(tenant.id, input, context(req, tenant));
    if (created.outcome === 'userNameTaken')
      throw new ScimError(409, 'uniqueness', `a user with userName "${input.userName}" already exists`);
    // The id comes with the rendered text, so the Location header needs no parse of the resource.
    res.setHeader('Location', `${baseUrl}/Users/${created.id}`);
    sendUserJson(res, 201, created, readProjection(req.query));
  });
  router.get('/Users/:id', async (req, res) => {
    const { tenant } = locals(res);
    await respondWithUser(req, res, tenant.id, String(req.params.id), pipelinedReads);
  });
  router.put('/Users/:id', async (req, res) => {
    const { tenant } = locals(res);
    const row = await replaceUser(
      db,
      tenant.id,
      String(req.params.id),
      readUserInput(req.body),
      req.get('If-Match'),
      context(req, tenant),
    );
    await respondWithUser(req, res, tenant.id, row.id);
  });
  router.patch('/Users/:id', async (req, res) => {
    const { tenant } = locals(res);
    const row = await patchUser(
      db,
      tenant.id,
      String(req.params.id),
      readPatchRequest(req.body),
      req.get('If-Match'),
      context(req, tenant),
    );
    await respondWithUser(req, res, tenant.id, row.id);
  });
  router.delete('/Users/:id', async (req, res) => {
    const { tenant } = locals(res);
    await deleteUser(db, tenant.id, String(req.params.id), req.get('If-Match'), context(req, tenant));
    res.status(204).end();
  });

  // Groups
  router.get('/Groups', async (req, res) => {
    const { tenant } = locals(res);
    const query = readListQuery(req);
    const page = await listGroups(db, tenant.id, query);
    const members = projectionKeeps(query.projection, 'members')
      ? await membersOfGroups(
          db,
          page.rows.map((r) => r.id),
        )
      : undefined;
    const resources = page.rows.map((row) =>
      project(renderGroup(row, members?.get(row.id), baseUrl), query.projection, GROUP_PROJECTION),
    );
    res.json(listResponse(resources, page.total, query.startIndex));
  });
  router.post('/Groups', async (req, res) => {
    const { tenant } = locals(res);
    const input = readGroupInput(req.body);
    const row = await createGroup(db, tenant.id, input, context(req, tenant));
    const members = (await membersOfGroups(db, [row.id])).get(row.id);
    sendResource(
      res,
      201,
      renderGroup(row, members, baseUrl),
      row.version,
      readProjection(req.query),
      GROUP_PROJECTION,
    );
  });
  router.get('/Groups/:id', async (req, res) => {
    const { tenant } = locals(res);
    const row = await findGroup(db, tenant.id, String(req.params.id));
    const projection = readProjection(req.query);
    const members = projectionKeeps(projection, 'members')
      ? (await membersOfGroups(db, [row.id])).get(row.id)
      : undefined;
    sendResource(res, 200, renderGroup(row, members, baseUrl), row.version, projection, GROUP_PROJECTION);
  });
  router.put('/Groups/:id', async (req, res) => {
    const { tenant } = locals(res);
    const row = await replaceGroup(
      db,
      tenant.id,
      String(req.params.id),
      readGroupInput(req.body),
      req.get('If-Match'),
      context(req, tenant),
    );
    const projection = readProjection(req.query);
    const members = projectionKeeps(projection, 'members')
      ? (await membersOfGroups(db, [row.id])).get(row.id)
      : undefined;
    sendResource(res, 200, renderGroup(row, members, baseUrl), row.version, projection, GROUP_PROJECTION);
  });
  router.patch('/Groups/:id', async (req, res) => {
    const { tenant } = locals(res);
    const row = await patchGroup(
      db,
      tenant.id,
      String(req.params.id),
      readPatchRequest(req.body),
      req.get('If-Match'),
      context(req, tenant),
    );
    res.setHeader('ETag', etagOf(row.version));
    // RFC 7644 §3.5.2: 204 unless the client asked for attributes. Never echo a large member list.
    const projection = readProjection(req.query);
    if (!isProjected(projection)) {
      res.status(204).end();
      return;
    }
    const members = projectionKeeps(projection, 'members')
      ? (await membersOfGroups(db, [row.id])).get(row.id)
      : undefined;
    sendResource(res, 200, renderGroup(row, members, baseUrl), row.version, projection, GROUP_PROJECTION);
  });
  router.delete('/Groups/:id', async (req, res) => {
    const { tenant } = locals(res);
    await deleteGroup(db, tenant.id, String(req.params.id), req.get('If-Match'), context(req, tenant));
    res.status(204).end();
  });

  router.use((req, _res) => {
    throw new ScimError(404, undefined, `no SCIM endpoint ${req.method} ${req.path}`);
  });
  router.use(scimErrorHandler);
  return router;
}

function authenticate(tokens: ScimTokenVerifier) {
  return async (req: Request, res: Response, next: NextFunction) => {
    const header = req.get('Authorization') ?? '';
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    const tenant = match ? await tokens.verify(match[1]!) : undefined;
    if (!tenant) {
      res.setHeader('WWW-Authenticate', 'Bearer realm="idsync SCIM"');
      sendScimError(
        res,
        new ScimError(
          401,
          undefined,
          match ? 'the bearer token is not valid' : 'an Authorization: Bearer token is required',
        ),
      );
      return;
    }
    (res.locals as ScimLocals).tenant = tenant;
    next();
  };
}

function locals(res: Response): ScimLocals {
  return res.locals as ScimLocals;
}

function context(req: Request, tenant: Tenant): RequestContext {
  return {
    actor: `scim:${tenant.name}`,
    correlationId: typeof req.id === 'string' ? req.id : String(req.id ?? ''),
  };
}

interface ListQuery {
  filter: FilterNode | undefined;
  startIndex: number;
  count: number;
  projection: Projection;
}

function queryValue(req: Request, name: string): string | undefined {
  const key = Object.keys(req.query).find((k) => k.toLowerCase() === name.toLowerCase());
  const value = key === undefined ? undefined : req.query[key];
  if (value === undefined) return undefined;
  if (Array.isArray(value)) throw new ScimError(400, 'invalidValue', `"${name}" may be given once`);
  return String(value);
}

function readListQuery(req: Request): ListQuery {
  const filterText = queryValue(req, 'filter');
  const integer = (name: string, fallback: number) => {
    const raw = queryValue(req, name);
    return raw === undefined || raw === '' ? fallback : boundedInteger(raw, name);
  };
  // RFC 7644 §3.4.2.4: startIndex below 1 means 1; a negative count means 0.
  const startIndex = Math.max(1, integer('startIndex', 1));
  const count = Math.min(MAX_PAGE_SIZE, Math.max(0, integer('count', 100)));
  return {
    filter: filterText === undefined || filterText.trim() === '' ? undefined : parseFilter(filterText),
    startIndex,
    count,
    projection: readProjection(req.query as Record<string, unknown>),
  };
}

async function userJsonOrNotFound(db: Database, tenantId: string, id: string, baseUrl: string) {
  const found = isUuid(id) ? await findUserJson(db, tenantId, id, baseUrl) : undefined;
  if (!found) throw new ScimError(404, undefined, `User ${id} not found`);
  return found;
}

function sendUserJson(
  res: Response,
  status: number,
  user: { resource: string; version: number },
  projection: Projection,
): void {
  res.status(status).setHeader('ETag', etagOf(user.version));
  res.send(
    isProjected(projection)
      ? JSON.stringify(project(JSON.parse(user.resource), projection, USER_PROJECTION))
      : user.resource,
  );
}

function listResponseText(resources: string[], total: number, startIndex: number): string {
  return `{"schemas":["${LIST_RESPONSE_SCHEMA}"],"totalResults":${total},"itemsPerPage":${resources.length},"startIndex":${startIndex},"Resources":[${resources.join(',')}]}`;
}

function listResponse(resources: unknown[], total: number, startIndex: number) {
  return {
    schemas: [LIST_RESPONSE_SCHEMA],
    totalResults: total,
    itemsPerPage: resources.length,
    startIndex,
    Resources: resources,
  };
}

function sendResource(
  res: Response,
  status: number,
  resource: Record<string, unknown>,
  version: number,
  projection: Projection,
  schemas: typeof USER_PROJECTION | typeof GROUP_PROJECTION,
): void {
  res.status(status);
  res.setHeader('ETag', etagOf(version));
  const meta = resource.meta as { location?: string } | undefined;
  if (status === 201 && meta?.location) res.setHeader('Location', meta.location);
  res.json(project(resource, projection, schemas));
}

function serviceProviderConfig(baseUrl: string) {
  return {
    schemas: ['urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig'],
    documentationUri: 'https://github.com/idsync/idsync#scim',
    patch: { supported: true },
    bulk: { supported: false, maxOperations: 0, maxPayloadSize: 0 },
    filter: { supported: true, maxResults: MAX_PAGE_SIZE },
    changePassword: { supported: false },
    sort: { supported: false },
    etag: { supported: true },
    authenticationSchemes: [
      {
        type: 'oauthbearertoken',
        name: 'Bearer token',
        description: 'The tenant SCIM token from `idsync tenant create` in an Authorization: Bearer header',
        primary: true,
      },
    ],
    // Not part of RFC 7643: how much one request may change, so clients can size their batches.
    'urn:idsync:params:scim:limits': {
      maxMembersPerRequest: MAX_MEMBERS_PER_REQUEST,
      maxOperationsPerPatch: MAX_PATCH_OPERATIONS,
      maxPayloadBytes: 1024 * 1024,
    },
    meta: { resourceType: 'ServiceProviderConfig', location: `${baseUrl}/ServiceProviderConfig` },
  };
}

/** The `userName eq` existence check runs as a prepared statement; any other filter as built SQL. */
function userNameFilter(filter: FilterNode): SQL | { userName: string } {
  const userName = userNameEquality(filter);
  return userName === undefined ? filterToSql(filter, userMapping) : { userName };
}

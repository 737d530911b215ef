import type { IncomingMessage, ServerResponse } from 'node:http';
import { parse as parseQueryString } from 'node:querystring';
import type { SQL } from 'drizzle-orm';
import { type ErrorRequestHandler, type RequestHandler, Router } from 'express';
import type { Database } from '../db/client.js';
import { boundedInteger, jsonBody, refuseHostileText } from '../http/hostile-input.js';
import { headerOf, pathnameOf, sendText } from '../http/plain-response.js';
import { measureScimRequests } from '../metrics/scim-requests.js';
import type { ScimTokenVerifier } from '../tenants/scim-token-cache.js';
import type { Tenant } from '../tenants/tenants.js';
import { SCIM_CONTENT_TYPE, ScimError, scimErrorHandler, sendScimError } from './errors.js';
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
 *
 * It is served on Node's own request and response, without Express's app layer (the mount is
 * `withoutExpress`, see createHttpListener): handlers take a ScimRequest and a ServerResponse, and answer
 * through sendText. The route table is Express's router all the same.
 */

export const MAX_PAGE_SIZE = 1000;
/** A list's `count` when the client sends none. */
export const DEFAULT_PAGE_SIZE = 100;
const BODY_LIMIT = '1mb';

/** What the edge's own middleware adds to Node's request before a handler runs. */
export interface ScimRequest extends IncomingMessage {
  /** Route parameters, from the router. */
  params: Record<string, string>;
  /** The query string, parsed once (as Express's "simple" query parser does). */
  query: Record<string, string | string[] | undefined>;
  /** The parsed JSON body; undefined when the request has none. */
  body?: unknown;
  /** The tenant whose token authenticated the request. */
  tenant?: Tenant;
}

type ScimHandler = (req: ScimRequest, res: ServerResponse) => void | Promise<void>;
type ScimMiddleware = (req: ScimRequest, res: ServerResponse, next: (error?: unknown) => void) => void;

/** Express's handler type lies about the request here (no req.get, res.send...): handlers say theirs. */
const asHandler = (handler: ScimHandler | ScimMiddleware) => handler as unknown as RequestHandler;

const sendJson = (req: IncomingMessage, res: ServerResponse, status: number, body: unknown) =>
  sendText(req, res, status, JSON.stringify(body));

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
  const use = (...handlers: ScimMiddleware[]) => router.use(...handlers.map(asHandler));
  const route = (method: 'get' | 'post' | 'put' | 'patch' | 'delete', path: string, handler: ScimHandler) =>
    router[method](path, asHandler(handler));

  use(measureScimRequests, (req, res, next) => {
    res.setHeader('Content-Type', SCIM_CONTENT_TYPE);
    req.query = parseQueryString(queryStringOf(req));
    next();
  });
  // The token before the body: a caller without one is refused without its body being read or parsed.
  use(authenticate(tokens));
  // body-parser is Node middleware typed as Express's: it reads only Node's request.
  use(
    jsonBody({
      limit: BODY_LIMIT,
      type: ['application/json', 'application/scim+json', 'application/*+json'],
    }) as unknown as ScimMiddleware,
  );
  use(refuseHostileText, (req, _res, next) => {
    refuseNullElements(req.body);
    next();
  });

  route('get', '/ServiceProviderConfig', (req, res) => {
    sendJson(req, res, 200, serviceProviderConfig(baseUrl));
  });
  route('get', '/ResourceTypes', (req, res) => {
    const resources = resourceTypeDocuments(baseUrl);
    sendJson(req, res, 200, listResponse(resources, resources.length, 1));
  });
  route('get', '/ResourceTypes/:id', (req, res) => {
    const found = resourceTypeDocuments(baseUrl).find(
      (r) => r.id.toLowerCase() === String(req.params.id).toLowerCase(),
    );
    if (!found) throw new ScimError(404, undefined, `ResourceType ${req.params.id} not found`);
    sendJson(req, res, 200, found);
  });
  route('get', '/Schemas', (req, res) => {
    const schemas = schemaDocuments(baseUrl);
    sendJson(req, res, 200, listResponse(schemas, schemas.length, 1));
  });
  route('get', '/Schemas/:id', (req, res) => {
    const found = schemaDocuments(baseUrl).find(
      (s) => s.id.toLowerCase() === String(req.params.id).toLowerCase(),
    );
    if (!found) throw new ScimError(404, undefined, `Schema ${req.params.id} not found`);
    sendJson(req, res, 200, found);
  });

  /** GET, PUT and PATCH all answer with the user as stored now, rendered by PostgreSQL. */
  const respondWithUser = async (
    req: ScimRequest,
    res: ServerResponse,
    tenantId: string,
    id: string,
    pool: Database = db,
  ) =>
    sendUserJson(
      req,
      res,
      200,
      await userJsonOrNotFound(pool, tenantId, id, baseUrl),
      readProjection(req.query),
    );

  /** A group as stored now, its members read only when the projection keeps them. */
  const respondWithGroup = async (
    req: ScimRequest,
    res: ServerResponse,
    status: number,
    row: Awaited<ReturnType<typeof findGroup>>,
    projection: Projection,
  ) => {
    const members = projectionKeeps(projection, 'members')
      ? (await membersOfGroups(db, [row.id])).get(row.id)
      : undefined;
    sendResource(
      req,
      res,
      status,
      renderGroup(row, members, baseUrl),
      row.version,
      projection,
      GROUP_PROJECTION,
    );
  };

  // Users
  route('get', '/Users', async (req, res) => {
    const tenant = tenantOf(req);
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
    // Fast path: PostgreSQL rendered the resources; unprojected lists are spliced as their bytes, not
    // decoded, re-parsed or encoded again.
    const resources = isProjected(query.projection)
      ? Buffer.from(
          (JSON.parse(`[${page.resources.toString()}]`) as Record<string, unknown>[])
            .map((resource) => JSON.stringify(project(resource, query.projection, USER_PROJECTION)))
            .join(','),
        )
      : page.resources;
    sendText(req, res, 200, listResponseBody(resources, page.returned, page.total, query.startIndex));
  });
  route('post', '/Users', async (req, res) => {
    const tenant = tenantOf(req);
    const input = readUserInput(req.body);
    const created = await createUser(
      tenant.id,
      { ...input, active: input.active ?? true },
      context(req, tenant),
    );
    if (created.outcome === 'userNameTaken')
      throw new ScimError(409, 'uniqueness', `a user with userName "${input.userName}" already exists`);
    // The id comes with the rendered text, so the Location header needs no parse of the resource.
    res.setHeader('Location', `${baseUrl}/Users/${created.id}`);
    sendUserJson(req, res, 201, created, readProjection(req.query));
  });
  route('get', '/Users/:id', async (req, res) => {
    const tenant = tenantOf(req);
    await respondWithUser(req, res, tenant.id, String(req.params.id), pipelinedReads);
  });
  route('put', '/Users/:id', async (req, res) => {
    const tenant = tenantOf(req);
    const row = await replaceUser(
      db,
      tenant.id,
      String(req.params.id),
      readUserInput(req.body),
      headerOf(req, 'If-Match'),
      context(req, tenant),
    );
    await respondWithUser(req, res, tenant.id, row.id);
  });
  route('patch', '/Users/:id', async (req, res) => {
    const tenant = tenantOf(req);
    const row = await patchUser(
      db,
      tenant.id,
      String(req.params.id),
      readPatchRequest(req.body),
      headerOf(req, 'If-Match'),
      context(req, tenant),
    );
    await respondWithUser(req, res, tenant.id, row.id);
  });
  route('delete', '/Users/:id', async (req, res) => {
    const tenant = tenantOf(req);
    await deleteUser(db, tenant.id, String(req.params.id), headerOf(req, 'If-Match'), context(req, tenant));
    res.statusCode = 204;
    res.end();
  });

  // Groups
  route('get', '/Groups', async (req, res) => {
    const tenant = tenantOf(req);
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
    sendJson(req, res, 200, listResponse(resources, page.total, query.startIndex));
  });
  route('post', '/Groups', async (req, res) => {
    const tenant = tenantOf(req);
    const input = readGroupInput(req.body);
    const row = await createGroup(db, tenant.id, input, context(req, tenant));
    await respondWithGroup(req, res, 201, row, readProjection(req.query));
  });
  route('get', '/Groups/:id', async (req, res) => {
    const tenant = tenantOf(req);
    const row = await findGroup(db, tenant.id, String(req.params.id));
    await respondWithGroup(req, res, 200, row, readProjection(req.query));
  });
  route('put', '/Groups/:id', async (req, res) => {
    const tenant = tenantOf(req);
    const row = await replaceGroup(
      db,
      tenant.id,
      String(req.params.id),
      readGroupInput(req.body),
      headerOf(req, 'If-Match'),
      context(req, tenant),
    );
    await respondWithGroup(req, res, 200, row, readProjection(req.query));
  });
  route('patch', '/Groups/:id', async (req, res) => {
    const tenant = tenantOf(req);
    const row = await patchGroup(
      db,
      tenant.id,
      String(req.params.id),
      readPatchRequest(req.body),
      headerOf(req, 'If-Match'),
      context(req, tenant),
    );
    res.setHeader('ETag', etagOf(row.version));
    // RFC 7644 §3.5.2: 204 unless the client asked for attributes. Never echo a large member list.
    const projection = readProjection(req.query);
    if (!isProjected(projection)) {
      res.statusCode = 204;
      res.end();
      return;
    }
    await respondWithGroup(req, res, 200, row, projection);
  });
  route('delete', '/Groups/:id', async (req, res) => {
    const tenant = tenantOf(req);
    await deleteGroup(db, tenant.id, String(req.params.id), headerOf(req, 'If-Match'), context(req, tenant));
    res.statusCode = 204;
    res.end();
  });

  use((req) => {
    // RFC 7644 §3.11 and §3.7: endpoints this server does not implement (ServiceProviderConfig says so
    // for bulk) answer 501, not 404.
    const unimplemented = /^\/(Me|Bulk)(\/|$)/i.exec(pathnameOf(req).replace(/^.*\/scim\/v2/i, ''));
    if (unimplemented)
      throw new ScimError(501, undefined, `/${unimplemented[1]} is not implemented by this service provider`);
    throw new ScimError(404, undefined, `no SCIM endpoint ${req.method} ${pathnameOf(req)}`);
  });
  router.use(scimErrorHandler as unknown as ErrorRequestHandler);
  return router;
}

function authenticate(tokens: ScimTokenVerifier): ScimMiddleware {
  return async (req, res, next) => {
    const header = headerOf(req, 'Authorization') ?? '';
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    const tenant = match ? await tokens.verify(match[1]!) : undefined;
    if (!tenant) {
      res.setHeader('WWW-Authenticate', 'Bearer realm="idsync SCIM"');
      sendScimError(
        req,
        res,
        new ScimError(
          401,
          undefined,
          match ? 'the bearer token is not valid' : 'an Authorization: Bearer token is required',
        ),
      );
      return;
    }
    req.tenant = tenant;
    next();
  };
}

function tenantOf(req: ScimRequest): Tenant {
  if (!req.tenant) throw new Error('a SCIM handler ran before authenticate');
  return req.tenant;
}

function queryStringOf(req: IncomingMessage): string {
  const url = req.url ?? '';
  const start = url.indexOf('?');
  return start === -1 ? '' : url.slice(start + 1);
}

function context(req: ScimRequest, tenant: Tenant): RequestContext {
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

function queryValue(req: ScimRequest, name: string): string | undefined {
  const key = Object.keys(req.query).find((k) => k.toLowerCase() === name.toLowerCase());
  const value = key === undefined ? undefined : req.query[key];
  if (value === undefined) return undefined;
  if (Array.isArray(value)) throw new ScimError(400, 'invalidValue', `"${name}" may be given once`);
  return String(value);
}

function readListQuery(req: ScimRequest): ListQuery {
  const filterText = queryValue(req, 'filter');
  const integer = (name: string, fallback: number) => {
    const raw = queryValue(req, name);
    return raw === undefined || raw === '' ? fallback : boundedInteger(raw, name);
  };
  // RFC 7644 §3.4.2.4: startIndex below 1 means 1; a negative count means 0.
  const startIndex = Math.max(1, integer('startIndex', 1));
  const count = Math.min(MAX_PAGE_SIZE, Math.max(0, integer('count', DEFAULT_PAGE_SIZE)));
  return {
    filter: filterText === undefined || filterText.trim() === '' ? undefined : parseFilter(filterText),
    startIndex,
    count,
    projection: readProjection(req.query),
  };
}

async function userJsonOrNotFound(db: Database, tenantId: string, id: string, baseUrl: string) {
  const found = isUuid(id) ? await findUserJson(db, tenantId, id, baseUrl) : undefined;
  if (!found) throw new ScimError(404, undefined, `User ${id} not found`);
  return found;
}

function sendUserJson(
  req: IncomingMessage,
  res: ServerResponse,
  status: number,
  user: { resource: string; version: number },
  projection: Projection,
): void {
  res.setHeader('ETag', etagOf(user.version));
  sendText(
    req,
    res,
    status,
    isProjected(projection)
      ? JSON.stringify(project(JSON.parse(user.resource), projection, USER_PROJECTION))
      : user.resource,
  );
}

const LIST_END = Buffer.from(']}');

/**
 * A ListResponse, in parts, around `returned` resources already UTF-8 JSON and joined by commas: their
 * bytes are neither decoded nor copied.
 */
function listResponseBody(resources: Buffer, returned: number, total: number, startIndex: number): Buffer[] {
  const head = Buffer.from(
    `{"schemas":["${LIST_RESPONSE_SCHEMA}"],"totalResults":${total},"itemsPerPage":${returned},"startIndex":${startIndex},"Resources":[`,
  );
  return [head, resources, LIST_END];
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
  req: IncomingMessage,
  res: ServerResponse,
  status: number,
  resource: Record<string, unknown>,
  version: number,
  projection: Projection,
  schemas: typeof USER_PROJECTION | typeof GROUP_PROJECTION,
): void {
  res.setHeader('ETag', etagOf(version));
  const meta = resource.meta as { location?: string } | undefined;
  if (status === 201 && meta?.location) res.setHeader('Location', meta.location);
  sendJson(req, res, status, project(resource, projection, schemas));
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

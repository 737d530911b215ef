import type { IncomingMessage, ServerResponse } from 'node:http';
import { pathnameOf } from '../http/plain-response.js';
import { SCIM_RESOURCES, type ScimResource, scimRequestDuration, scimRequests } from './registry.js';

const METHODS = new Set(['GET', 'POST', 'PUT', 'PATCH', 'DELETE']);

/** The resource named by the path's first segment (routes are case-insensitive, as in the router). */
export function scimResourceOf(path: string): ScimResource {
  const first = path.split('/')[1]?.toLowerCase() ?? '';
  return SCIM_RESOURCES.find((r) => r.toLowerCase() === first) ?? 'other';
}

/**
 * Counts and times every SCIM request when its answer is sent — refusals (401, 400, 413) included,
 * since an IdP whose token was rotated is exactly what the counter should show. Labels come from
 * closed sets only: the path's resource name (never the id after it), the method, the status code.
 */
export function measureScimRequests(req: IncomingMessage, res: ServerResponse, next: () => void): void {
  const stop = performance.now();
  res.on('finish', () => {
    const resource = scimResourceOf(pathnameOf(req));
    const method = req.method !== undefined && METHODS.has(req.method) ? req.method : 'other';
    scimRequests.inc({ resource, method, status: String(res.statusCode) });
    scimRequestDuration.observe({ resource, method }, (performance.now() - stop) / 1000);
  });
  next();
}

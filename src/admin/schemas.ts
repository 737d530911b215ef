import { z } from 'zod';
import { ADMIN_ROLES } from '../security/admin-tokens.js';

/*
 * Request bodies of the admin API: each validates the request (parsedOrInvalid) and describes it in the
 * OpenAPI document (src/http/openapi.ts), so the contract and the checks cannot drift apart.
 */

export const issueTokenBodySchema = z.object({
  scopes: z.array(z.string(), { error: '"scopes" must be a list of scope names' }).default([]),
  expiresInSeconds: z.number({ error: '"expiresInSeconds" must be a number' }).int().positive().optional(),
  label: z.string({ error: '"label" must be a string' }).max(200).optional(),
});

export const createClientBodySchema = z.object({
  name: z.string({ error: '"name" is required' }),
  scopes: z.array(z.string(), { error: '"scopes" must be a list: introspect, revoke' }).optional(),
});

export const createAdminTokenBodySchema = z.object({
  name: z.string({ error: '"name" is required' }),
  role: z.enum(ADMIN_ROLES, { error: `"role" must be one of ${ADMIN_ROLES.join(', ')}` }),
  /** The one tenant the token may act on; absent for an all-tenant token (all-tenant owners only). */
  tenant: z.string().nullable().optional(),
});

export const deliveriesQuerySchema = z.object({
  limit: z.coerce.number().int().min(1).max(500).default(50),
});

import type { Request, Response } from 'express';
import { SamlRefusal } from '../sso/refusal.js';
import { ssoLogins } from './registry.js';

/**
 * Counts one ACS login by how it ended: accepted, refused (with the refusal's kind, a closed set) or
 * error (idsync could not finish it: the database was away, a bug). Nothing about the user is a label.
 */
export function measureLogin<A extends unknown[]>(
  handler: (req: Request, res: Response, ...rest: A) => Promise<void>,
) {
  return async (req: Request, res: Response, ...rest: A): Promise<void> => {
    try {
      await handler(req, res, ...rest);
      ssoLogins.inc({ outcome: 'accepted', reason: 'none' });
    } catch (error) {
      if (error instanceof SamlRefusal) ssoLogins.inc({ outcome: 'refused', reason: error.kind });
      else ssoLogins.inc({ outcome: 'error', reason: 'none' });
      throw error;
    }
  };
}

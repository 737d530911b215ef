import { z } from 'zod';

/** A tenant's Heroku settings, as stored in tenants.connector_settings (the token only sealed). */
export const herokuSettingsSchema = z.object({
  /** The Enterprise Account's id or name. */
  enterpriseAccount: z.string().min(1),
  apiUrl: z
    .string()
    .url()
    .default('https://api.heroku.com')
    .transform((u) => u.replace(/\/+$/, '')),
  /** Where the API token comes from: an environment variable of the idsync processes, or sealed here. */
  token: z.union([
    z.object({ env: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/) }),
    z.object({ sealed: z.string().min(1) }),
  ]),
  /**
   * The Enterprise Account's id, remembered from the first read: paths use it, since the account can be
   * renamed (Dev Center `heroku enterprises:rename`) and a renamed name answers 404.
   */
  enterpriseAccountId: z.string().min(1).optional(),
  /** The Heroku account the token belongs to: the rate budget is shared by everything using it. */
  budgetKey: z.string().min(1).optional(),
  refillPerMinute: z.number().positive().default(75),
  /** Requests kept back for deprovisioning when reconciles and scans must wait. */
  reserve: z.number().int().min(0).default(100),
  /** Requests in flight at once for one job (a cascade's removals, a scan's reads). */
  concurrency: z.number().int().min(1).max(32).default(8),
});

export type HerokuSettings = z.infer<typeof herokuSettingsSchema>;

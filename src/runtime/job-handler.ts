import { sql } from 'drizzle-orm';
import type { DatabaseHandle } from '../db/client.js';
import type { JobHandler } from '../jobs/workers.js';
import type { ConnectorFor } from '../platform/factory.js';
import { type Cause, planUser, type ReconcileDependencies, reconcileUser } from '../reconcile/reconciler.js';

/**
 * What a job for each kind of subject does. A user job reconciles the user; a group job (a rename)
 * fans out to the group's members through the outbox, so the fan-out is as durable as any change.
 */
export function createJobHandler(database: DatabaseHandle, connectorFor: ConnectorFor): JobHandler {
  const deps: ReconcileDependencies = { database, connectorFor };
  return async (payload, context) => {
    const cause = (payload.cause ?? {}) as Cause;
    switch (payload.subjectType) {
      case 'user': {
        if (context.lane === 'reconcile') {
          // Removal from the last group that granted access is an offboarding: it belongs in the
          // deprovision lane, which never waits behind ordinary reconciles.
          const planned = await planUser(deps, payload.tenantId, payload.subjectId);
          if (planned?.offboarding && planned.plan.operations.length > 0) {
            await database.db.execute(sql`
              INSERT INTO outbox (tenant_id, lane, subject_type, subject_id, cause)
              VALUES (${payload.tenantId}, 'deprovision', 'user', ${payload.subjectId}, ${JSON.stringify(cause)}::jsonb)`);
            context.log.info('user lost all access: handed to the deprovision lane');
            return;
          }
        }
        const result = await reconcileUser(deps, payload.tenantId, payload.subjectId, cause, context.lane);
        context.log.info(
          {
            operations: result.applied.length,
            blocked: result.blocked.length,
            offboarding: result.offboarding,
          },
          'user reconciled',
        );
        return;
      }
      case 'group':
        await database.db.execute(sql`
          INSERT INTO outbox (tenant_id, lane, subject_type, subject_id, cause)
          SELECT ${payload.tenantId}, 'reconcile', 'user', user_id::text, ${JSON.stringify(cause)}::jsonb
          FROM group_members WHERE group_id = ${payload.subjectId}`);
        return;
      default:
        context.log.warn({ subjectType: payload.subjectType }, 'no reconciler for this kind of subject yet');
    }
  };
}

import { notify } from '../alerts/notify.js';
import { recordAudit } from '../audit/audit-log.js';
import type { Database } from '../db/client.js';
import type { Logger } from '../log.js';
import type { JobFailure } from './workers.js';

/** A deprovision failing this many attempts in a row is alerted while it keeps being retried. */
export const ALERT_AFTER_ATTEMPTS = 3;

/**
 * An offboarding that keeps failing leaves someone with access: it is alerted — a log line at level
 * fatal with `event: deprovision.failed`, which operators page on, and an audit row — once after
 * ALERT_AFTER_ATTEMPTS failed attempts (it is still being retried) and again when BullMQ gives up
 * (the sweeper then sends it again). No human has to notice a failed set.
 */
export function deprovisionAlert(db: Database, log: Logger) {
  return async (failure: JobFailure): Promise<void> => {
    if (failure.lane !== 'deprovision' || failure.payload.subjectType !== 'user') return;
    if (!failure.final && failure.attemptsMade !== ALERT_AFTER_ATTEMPTS) return;
    const { payload } = failure;
    log.fatal(
      {
        event: 'deprovision.failed',
        tenantId: payload.tenantId,
        userId: payload.subjectId,
        jobId: failure.jobId,
        attempts: failure.attemptsMade,
        retrying: !failure.final,
        err: { message: failure.error.message },
      },
      failure.final
        ? 'ALERT: a deprovision failed every attempt; the sweeper will send it again'
        : 'ALERT: a deprovision keeps failing; it is being retried with back-off',
    );
    await recordAudit(db, {
      tenantId: payload.tenantId,
      actor: 'worker',
      action: 'deprovision.failed',
      subjectType: 'user',
      subjectId: payload.subjectId,
      after: {
        jobId: failure.jobId,
        attempts: failure.attemptsMade,
        retrying: !failure.final,
        reason: failure.error.message.slice(0, 500),
      },
    });
    await notify(db, {
      tenantId: payload.tenantId,
      type: 'deprovision.failed',
      key: `deprovision.failed:${failure.jobId}:${failure.final ? 'final' : 'retrying'}`,
      summary: failure.final
        ? `a deprovision failed all ${failure.attemptsMade} attempts; the sweeper will send it again`
        : `a deprovision failed ${failure.attemptsMade} attempts in a row and is being retried`,
      data: {
        userId: payload.subjectId,
        jobId: failure.jobId,
        attempts: failure.attemptsMade,
        retrying: !failure.final,
        reason: failure.error.message.slice(0, 500),
      },
    });
  };
}

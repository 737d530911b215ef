import type { Command } from 'commander';
import { LANES, type LaneQueues } from '../jobs/queues.js';
import { CliError, configOrExit, EXIT, withQueueConnection } from './context.js';
import { startProgress } from './progress.js';

const withQueues = <T>(work: (queues: LaneQueues) => Promise<T>) =>
  withQueueConnection(configOrExit(), (_redis, queues) => work(queues));

/** `idsync jobs failed` and `idsync jobs retry`: the jobs that kept failing, and a second chance. */
export function registerJobsCommands(program: Command): void {
  const jobs = program.command('jobs').description('background jobs (BullMQ)');
  jobs
    .command('failed')
    .description('jobs that failed every attempt, with their reasons')
    .action(() =>
      withQueues(async (queues) => {
        let count = 0;
        for (const lane of LANES) {
          for (const job of await queues[lane].getFailed(0, 999)) {
            count += 1;
            process.stdout.write(
              `${lane}\t${job.id}\t${job.data.subjectType}:${job.data.subjectId}\tattempts=${job.attemptsMade}\t${job.failedReason}\n`,
            );
          }
        }
        if (count === 0) process.stdout.write('no failed jobs\n');
      }),
    );
  jobs
    .command('retry [job-id]')
    .description('retry one failed job, or every failed job')
    .action((jobId: string | undefined) =>
      withQueues(async (queues) => {
        if (jobId === '') throw new CliError('jobs retry: the job id is empty', EXIT.usage);
        const chosen = jobId === undefined ? await allFailed(queues) : await failedJobs(queues, jobId);
        const progress = startProgress({ label: 'jobs retry', total: chosen.length });
        let retried = 0;
        try {
          for (const job of chosen) {
            await job.retry('failed');
            retried += 1;
            progress.advance(1, job.queueName.replace(/^idsync-/, ''));
          }
        } finally {
          progress.finish();
        }
        process.stdout.write(`retried ${retried} job${retried === 1 ? '' : 's'}\n`);
      }),
    );
}

async function allFailed(queues: LaneQueues) {
  return (await Promise.all(LANES.map((lane) => queues[lane].getFailed(0, 9999)))).flat();
}

/** The failed jobs with this id, in every lane (found directly, however many others failed). */
async function failedJobs(queues: LaneQueues, jobId: string) {
  const found = await Promise.all(LANES.map((lane) => queues[lane].getJob(jobId)));
  const failed = [];
  for (const job of found) if (job && (await job.isFailed())) failed.push(job);
  if (failed.length === 0) {
    throw new CliError(`no failed job ${jobId} (idsync jobs failed lists them)`, EXIT.dataError);
  }
  return failed;
}

import type { Command } from 'commander';
import { connectionReady, createRedisConnection } from '../jobs/connection.js';
import { closeQueues, LANES, openQueues } from '../jobs/queues.js';
import { createLogger } from '../log.js';
import { provideRedis } from '../runtime/infrastructure.js';
import { configOrExit } from './context.js';

async function withQueues<T>(work: (queues: ReturnType<typeof openQueues>) => Promise<T>): Promise<T> {
  const config = configOrExit();
  const log = createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel);
  const endpoint = await provideRedis(config, log, false);
  const connection = createRedisConnection(endpoint.url, 'producer');
  try {
    await connectionReady(connection);
    const queues = openQueues(connection, config.queuePrefix);
    try {
      return await work(queues);
    } finally {
      await closeQueues(queues);
    }
  } finally {
    connection.disconnect();
    await endpoint.release();
  }
}

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
        let retried = 0;
        for (const lane of LANES) {
          for (const job of await queues[lane].getFailed(0, 9999)) {
            if (jobId && job.id !== jobId) continue;
            await job.retry('failed');
            retried += 1;
          }
        }
        process.stdout.write(`retried ${retried} job${retried === 1 ? '' : 's'}\n`);
      }),
    );
}

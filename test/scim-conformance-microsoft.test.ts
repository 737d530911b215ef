import path from 'node:path';
import newman from 'newman';
import { describe, expect, it } from 'vitest';
import { conformanceSuites, missing } from './support/prerequisites.js';
import { startScimServer } from './support/scim-server.js';

const FOLDERS = [
  'Endpoint tests',
  'User tests',
  'Group tests',
  'ComplexAttribute tests',
  'User tests with garbage',
  'Group tests with garbage',
  'Teardown garbage',
];

describe("Microsoft's SCIM reference test collection (newman)", async () => {
  if (missing(conformanceSuites)) return;
  const server = await startScimServer();

  it('passes every assertion against a fresh, empty tenant', async () => {
    const summary = await new Promise<newman.NewmanRunSummary>((resolve, reject) => {
      newman.run(
        {
          collection: path.join(conformanceSuites.location, 'microsoft', 'PostmanCollection.relaxed.json'),
          envVar: [
            { key: 'Protocol', value: 'http' },
            { key: 'Server', value: '127.0.0.1' },
            { key: 'Port', value: `:${server.port}` },
            { key: 'Api', value: 'scim/v2' },
            { key: 'token', value: server.token },
          ],
          folder: FOLDERS,
          reporters: [],
        },
        (error, result) => (error ? reject(error) : resolve(result)),
      );
    });
    const failures = summary.run.failures.map(
      (f) => `${f.source?.name ?? '?'}: ${f.error?.test ?? ''} ${f.error?.message ?? ''}`,
    );
    const total = summary.run.stats.assertions.total ?? 0;
    const failed = summary.run.stats.assertions.failed ?? 0;
    console.log(`microsoft-scim: ${total - failed} passed, ${failed} failed`);
    expect(failures).toEqual([]);
    expect(total).toBeGreaterThan(90);
    // 79 requests less the three outside these folders (Get Token and two top-level checks).
    expect(summary.run.stats.requests.total).toBe(76);
  }, 120_000);
});

import { afterAll } from 'vitest';
import { createLogger } from '../../src/log.js';
import { createTenant } from '../../src/tenants/tenants.js';
import { startTestDaemon, testConfig } from './daemon.js';
import { createTestDatabase, type TestDatabase } from './database.js';
import { capturingLogger } from './log-capture.js';

export interface ScimServer {
  baseUrl: string;
  port: number;
  token: string;
  tenantId: string;
  database: TestDatabase;
  /** Sends an authenticated SCIM request; bodies are JSON. */
  request(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<Response>;
  createTenantToken(name: string): Promise<string>;
}

/** A real idsync HTTP server (serve mode) on its own database, with one fresh tenant. */
export async function startScimServer(): Promise<ScimServer> {
  const database = await createTestDatabase();
  // IDSYNC_TEST_LOG=debug shows the server's own log while debugging a test.
  const log = process.env.IDSYNC_TEST_LOG
    ? createLogger(process.env.IDSYNC_TEST_LOG)
    : capturingLogger('silent').log;
  const config = testConfig(database.url);
  const daemon = await startTestDaemon({
    mode: 'serve',
    config: { ...config, publicUrl: 'http://127.0.0.1' },
    log,
  });
  afterAll(() => daemon.stop());
  const { tenant, scimToken } = await createTenant(database.db, 'conformance', 'test');
  const baseUrl = `http://127.0.0.1:${daemon.port}/scim/v2`;
  const request = (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
    fetch(`${baseUrl}${path}`, {
      method,
      headers: {
        Authorization: `Bearer ${scimToken}`,
        ...(body === undefined ? {} : { 'Content-Type': 'application/scim+json' }),
        ...headers,
      },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
  return {
    baseUrl,
    port: daemon.port!,
    token: scimToken,
    tenantId: tenant.id,
    database,
    request,
    createTenantToken: async (name) => (await createTenant(database.db, name, 'test')).scimToken,
  };
}

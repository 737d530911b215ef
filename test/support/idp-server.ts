import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { inflateRawSync } from 'node:zlib';
import express from 'express';
import { createTestIdp, type IdpKeyPair, type TestIdp } from './test-idp.js';

/**
 * The test IdP served on loopback for browser tests: a login page at /sso that reads the AuthnRequest,
 * and on submit a samlify-signed response auto-posted to the SP's ACS, as a real IdP's page would.
 */
export interface IdpServer {
  url: string;
  idp: TestIdp;
  close(): Promise<void>;
}

const escapeHtml = (v: string) => v.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);

export async function startIdpServer(
  sp: { entityId: string; acsUrl: string },
  groupsFor: (user: string) => string[],
  /** A fixed port and key pair keep the IdP's entity id and certificate across restarts (npm run test-idp). */
  keep: { port?: number; keyPair?: IdpKeyPair } = {},
): Promise<IdpServer> {
  const app = express();
  app.use(express.urlencoded({ extended: false }));
  const server: Server = app.listen(keep.port ?? 0, '127.0.0.1');
  await Promise.race([
    once(server, 'listening'),
    once(server, 'error').then(([error]) => {
      throw error;
    }),
  ]);
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const idp = await createTestIdp(sp, url, keep.keyPair);

  app.get('/sso', (req, res) => {
    const xml = inflateRawSync(Buffer.from(String(req.query.SAMLRequest ?? ''), 'base64')).toString();
    const requestId = /ID="([^"]+)"/.exec(xml)?.[1] ?? '';
    res.type('html').send(`<!doctype html><html><head><title>Test IdP sign-in</title></head><body>
<h1>Test IdP</h1><form method="post" action="/sso/login">
<input type="hidden" name="requestId" value="${escapeHtml(requestId)}">
<input type="hidden" name="relayState" value="${escapeHtml(String(req.query.RelayState ?? ''))}">
<label>Username <input name="username" id="username"></label> <button type="submit" id="sign-in">Sign in</button>
</form></body></html>`);
  });

  app.post('/sso/login', async (req, res) => {
    const user = String(req.body.username);
    const samlResponse = await idp.respond({
      nameId: user,
      inResponseTo: String(req.body.requestId),
      attributes: { groups: groupsFor(user) },
    });
    res.type('html').send(`<!doctype html><html><body onload="document.forms[0].submit()">
<form method="post" action="${escapeHtml(sp.acsUrl)}">
<input type="hidden" name="SAMLResponse" value="${escapeHtml(samlResponse)}">
<input type="hidden" name="RelayState" value="${escapeHtml(String(req.body.relayState ?? ''))}">
<noscript><button type="submit">Continue</button></noscript></form></body></html>`);
  });

  return {
    url,
    idp,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

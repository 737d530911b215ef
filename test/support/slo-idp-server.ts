import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { inflateRawSync } from 'node:zlib';
import express from 'express';
import {
  logoutRequestXml,
  logoutResponseXml,
  postMessage,
  readSignedRedirect,
  redirectQuery,
} from './logout-messages.js';
import { createTestIdp, type TestIdp } from './test-idp.js';

/**
 * The test IdP with sessions and Single Logout, served on loopback for browser tests. /sso signs in once
 * (then answers at once while its session cookie lives); /slo takes idsync's signed LogoutRequest (checked
 * with the certificate idsync's SP metadata publishes), ends the IdP session and answers with a signed
 * LogoutResponse, or takes idsync's LogoutResponse to a logout the IdP started at /logout, which sends a
 * signed LogoutRequest by HTTP-POST.
 */
export interface SloIdpServer {
  url: string;
  idp: TestIdp;
  close(): Promise<void>;
}

const SESSION_COOKIE = 'test_idp_session';
const escapeHtml = (v: string) => v.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
const page = (title: string, body: string) =>
  `<!doctype html><html><head><title>${title}</title></head><body><h1>Test IdP</h1>${body}</body></html>`;
const autoPost = (action: string, fields: Record<string, string>) =>
  `<!doctype html><html><body onload="document.forms[0].submit()"><form method="post" action="${escapeHtml(action)}">${Object.entries(
    fields,
  )
    .map(([k, v]) => `<input type="hidden" name="${k}" value="${escapeHtml(v)}">`)
    .join('')}</form></body></html>`;

export async function startSloIdpServer(sp: {
  entityId: string;
  acsUrl: string;
  sloUrl: string;
  metadataUrl: string;
}): Promise<SloIdpServer> {
  const app = express();
  app.use(express.urlencoded({ extended: false }));
  const server: Server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const idp = await createTestIdp(sp, url);
  const spCertificate = async () => {
    const metadata = await (await fetch(sp.metadataUrl)).text();
    return `-----BEGIN CERTIFICATE-----\n${/<ds:X509Certificate>([^<]+)</.exec(metadata)![1]}\n-----END CERTIFICATE-----\n`;
  };
  const sessionOf = (req: express.Request) =>
    /(?:^|;\s*)test_idp_session=([^;]+)/.exec(req.get('Cookie') ?? '')?.[1];
  const respond = async (res: express.Response, user: string, requestId: string, relayState: string) => {
    const samlResponse = await idp.respond({ nameId: user, inResponseTo: requestId });
    res.type('html').send(autoPost(sp.acsUrl, { SAMLResponse: samlResponse, RelayState: relayState }));
  };

  app.get('/sso', async (req, res) => {
    const xml = inflateRawSync(Buffer.from(String(req.query.SAMLRequest ?? ''), 'base64')).toString();
    const requestId = /ID="([^"]+)"/.exec(xml)?.[1] ?? '';
    const relayState = String(req.query.RelayState ?? '');
    const session = sessionOf(req);
    if (session) {
      await respond(res, decodeURIComponent(session), requestId, relayState);
      return;
    }
    res.type('html').send(
      page(
        'Test IdP sign-in',
        `<form method="post" action="/sso/login"><input type="hidden" name="requestId" value="${escapeHtml(requestId)}">
<input type="hidden" name="relayState" value="${escapeHtml(relayState)}">
<label>Username <input name="username" id="username"></label> <button type="submit" id="sign-in">Sign in</button></form>`,
      ),
    );
  });

  app.post('/sso/login', async (req, res) => {
    const user = String(req.body.username);
    res.cookie(SESSION_COOKIE, user, { httpOnly: true, path: '/' });
    await respond(res, user, String(req.body.requestId), String(req.body.relayState ?? ''));
  });

  /** IdP-initiated: "sign out everywhere" sends idsync a signed LogoutRequest by HTTP-POST. */
  app.get('/logout', (req, res) => {
    const user = decodeURIComponent(sessionOf(req) ?? '');
    res.clearCookie(SESSION_COOKIE, { path: '/' });
    const request = logoutRequestXml({ entityId: url, privateKey: idp.privateKey }, sp.sloUrl, {
      nameId: user,
    });
    res.type('html').send(autoPost(sp.sloUrl, { SAMLRequest: postMessage(idp, request), RelayState: 'idp' }));
  });

  app.get('/slo', async (req, res) => {
    const message = readSignedRedirect(`${url}${req.originalUrl}`, await spCertificate());
    if (!message.signatureValid) {
      res
        .status(400)
        .type('html')
        .send(page('Refused', '<p id="refused">unsigned or forged logout message</p>'));
      return;
    }
    if (message.kind === 'SAMLResponse') {
      res.type('html').send(page('Signed out', '<p id="idp-signed-out">You are signed out everywhere.</p>'));
      return;
    }
    // idsync's LogoutRequest: end the IdP session and answer, signed, by HTTP-Redirect.
    const requestId = /ID="([^"]+)"/.exec(message.xml)![1]!;
    res.clearCookie(SESSION_COOKIE, { path: '/' });
    const answer = logoutResponseXml({ entityId: url, privateKey: idp.privateKey }, sp.sloUrl, requestId);
    res.redirect(302, `${sp.sloUrl}?${redirectQuery(idp, 'SAMLResponse', answer)}`);
  });

  return { url, idp, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

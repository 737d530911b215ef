export interface HttpAnswer {
  status: number;
  /** Whatever JSON the endpoint answered (tests read into it freely); undefined for no body or not JSON. */
  body: any;
  /** The body as sent (a CSV, an HTML page, or the JSON's text). */
  text: string;
}

/** One request with a bearer token: the way every test talks to a running daemon's JSON edges. */
export async function callWithToken(
  url: string,
  token: string,
  contentType: string,
  method: string,
  body?: unknown,
): Promise<HttpAnswer> {
  const response = await fetch(url, {
    method,
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': contentType },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  const json = /json/.test(response.headers.get('content-type') ?? '') && text !== '';
  return { status: response.status, body: json ? JSON.parse(text) : undefined, text };
}

/**
 * The IdP's and the operator's clients of a daemon: `scim(method, path)` under /scim/v2 with the
 * tenant's SCIM token, `admin(method, path)` under /api with an admin token. `origin` is read at each
 * call, so the clients follow a daemon that was restarted on another port.
 */
export function daemonClients(origin: () => string, tokens: { scimToken: string; adminToken: string }) {
  return {
    scim: (method: string, path: string, body?: unknown) =>
      callWithToken(`${origin()}/scim/v2${path}`, tokens.scimToken, 'application/scim+json', method, body),
    admin: (method: string, path: string, body?: unknown) =>
      callWithToken(`${origin()}/api${path}`, tokens.adminToken, 'application/json', method, body),
  };
}

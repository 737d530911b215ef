import { inflateRawSync } from 'node:zlib';

/**
 * What a browser does against idsync's SAML endpoints, for tests that play the user's part: it keeps
 * the login-state cookie /login sets and presents it to the ACS, as a browser would.
 */
export function ssoClient(publicUrl: string, tenant: string) {
  let stateCookie = '';
  const client = {
    /** Follows /login to the IdP and returns the AuthnRequest id it carries. */
    async requestId(idp?: string): Promise<string> {
      const query = idp ? `?idp=${encodeURIComponent(idp)}` : '';
      const response = await fetch(`${publicUrl}/sso/${tenant}/login${query}`, {
        redirect: 'manual',
        headers: stateCookie ? { Cookie: stateCookie } : {},
      });
      const setCookie = response.headers.get('set-cookie');
      if (setCookie) stateCookie = setCookie.split(';')[0]!;
      const location = new URL(response.headers.get('location')!);
      const xml = inflateRawSync(Buffer.from(location.searchParams.get('SAMLRequest')!, 'base64')).toString();
      return /ID="([^"]+)"/.exec(xml)![1]!;
    },
    /** The browser's login-state cookie (`name=value`), empty before the first /login. */
    stateCookie: () => stateCookie,
    /** Posts a SAMLResponse to the ACS as the IdP's auto-submitting form would, from this browser. */
    post(samlResponse: string, options: { cookie?: string } = {}): Promise<Response> {
      const cookie = options.cookie ?? stateCookie;
      return fetch(`${publicUrl}/sso/${tenant}/acs`, {
        method: 'POST',
        headers: {
          'Content-Type': 'application/x-www-form-urlencoded',
          ...(cookie ? { Cookie: cookie } : {}),
        },
        body: new URLSearchParams({ SAMLResponse: samlResponse }).toString(),
        redirect: 'manual',
      });
    },
  };
  return client;
}

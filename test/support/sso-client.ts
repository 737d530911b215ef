import { inflateRawSync } from 'node:zlib';

/** What a browser does against idsync's SAML endpoints, for tests that play the user's part. */
export function ssoClient(publicUrl: string, tenant: string) {
  return {
    /** Follows /login to the IdP and returns the AuthnRequest id it carries, and where it went. */
    async requestId(idp?: string): Promise<string> {
      const query = idp ? `?idp=${encodeURIComponent(idp)}` : '';
      const response = await fetch(`${publicUrl}/sso/${tenant}/login${query}`, { redirect: 'manual' });
      const location = new URL(response.headers.get('location')!);
      const xml = inflateRawSync(Buffer.from(location.searchParams.get('SAMLRequest')!, 'base64')).toString();
      return /ID="([^"]+)"/.exec(xml)![1]!;
    },
    /** Posts a SAMLResponse to the ACS as the IdP's auto-submitting form would. */
    post(samlResponse: string): Promise<Response> {
      return fetch(`${publicUrl}/sso/${tenant}/acs`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ SAMLResponse: samlResponse }).toString(),
        redirect: 'manual',
      });
    },
  };
}

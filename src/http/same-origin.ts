import type { Request } from 'express';

/**
 * Whether a change comes from idsync's own pages: the Origin header, else the Referer, must name
 * idsync's public origin. `Origin: null` (sandboxed frames, some redirects), an unparsable value or
 * none at all is refused, never guessed at: a browser sends one of them with every cross-site POST or
 * PUT, so only a request without either could be forged, and it is not accepted.
 */
export function fromOwnOrigin(req: Request, ownOrigin: string): boolean {
  const claimed = req.get('origin') ?? req.get('referer');
  return claimed !== undefined && URL.canParse(claimed) && new URL(claimed).origin === ownOrigin;
}

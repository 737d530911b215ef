import type { ErrorRequestHandler, Request, Response } from 'express';
import { HTTP_STATUS, rootCause, toDomainError } from '../errors.js';
import { escapeHtml, htmlPage } from './html.js';

const TITLES: Partial<Record<number, string>> = {
  400: 'Bad request',
  401: 'Not signed in',
  403: 'Not allowed',
  404: 'Not found',
};

/** The HTML error page of the browser-facing edges (console, SSO pages): status from the shared table. */
export function sendHtmlError(req: Request, res: Response, error: unknown): void {
  const known = toDomainError(error);
  if (!known) req.log?.error({ err: rootCause(error) }, 'page request failed');
  if (res.headersSent) return;
  const status = known ? HTTP_STATUS[known.kind] : 500;
  res
    .status(status)
    .type('html')
    .send(
      htmlPage(
        TITLES[status] ?? 'Something went wrong',
        `<p>${escapeHtml(known ? known.message : 'internal error; quote the X-Request-Id header')}</p>`,
      ),
    );
}

export const htmlErrorHandler: ErrorRequestHandler = (error, req, res, _next) =>
  sendHtmlError(req, res, error);

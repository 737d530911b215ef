import type { IncomingMessage, ServerResponse } from 'node:http';
import express, { type RequestHandler } from 'express';
import { invalid } from '../errors.js';
import { pathnameOf } from './plain-response.js';

/*
 * Guards every edge applies before its handlers see a request, so hostile input is a 400 in the edge's
 * own format instead of a crash deeper down: JSON nested deeper than any real document (recursive code
 * would overflow the stack), and NUL, control characters or broken UTF-16 that PostgreSQL refuses to
 * store or that have no business in an identity.
 */

/** Far deeper than any SCIM or admin document (a PATCH value is 4 levels). */
export const MAX_JSON_DEPTH = 32;

const OPEN_BRACKET = 0x5b; // [
const OPEN_BRACE = 0x7b; // {
const CLOSE_BRACKET = 0x5d; // ]
const CLOSE_BRACE = 0x7d; // }

/**
 * Counts bracket depth over the raw bytes, skipping strings, before JSON.parse runs: linear in the body
 * and allocation-free. No maintained body parser offers a depth limit (body-parser, secure-json-parse
 * and bourne guard against prototype pollution only).
 */
export function checkJsonDepth(body: Buffer, max = MAX_JSON_DEPTH): void {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < body.length; i++) {
    const byte = body[i]!;
    if (inString) {
      if (byte === 0x5c) i++;
      else if (byte === 0x22) inString = false;
    } else if (byte === 0x22) inString = true;
    // Plain comparisons, not Array.includes: this runs once per byte of every JSON body.
    else if (byte === OPEN_BRACKET || byte === OPEN_BRACE) {
      if (++depth > max) throw Object.assign(tooDeep(max), { status: 400 });
    } else if (byte === CLOSE_BRACKET || byte === CLOSE_BRACE) depth--;
  }
}

const tooDeep = (max: number) => invalid(`JSON is nested deeper than ${max} levels`, 'invalidSyntax');

/** express.json with the depth limit; the edges differ only in size limit and media types. */
export function jsonBody(options: { limit: string; type?: string[] }): RequestHandler {
  return express.json({
    limit: options.limit,
    ...(options.type ? { type: options.type } : {}),
    verify: (_req: IncomingMessage, _res, body: Buffer) => checkJsonDepth(body),
  });
}

// Tab, line feed and carriage return are text (a formatted address has lines); other C0 controls, DEL
// and NUL are not.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point.
const CONTROL = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F]/;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Why a string is refused, or undefined when it is acceptable text. */
export function textProblem(value: string): string | undefined {
  if (CONTROL.test(value)) return 'contains a NUL or control character';
  if (LONE_SURROGATE.test(value)) return 'contains an unpaired UTF-16 surrogate';
  return undefined;
}

/** Throws a 400 `invalidValue` naming where the first unacceptable string (or key) is. */
export function refuseControlCharacters(value: unknown, where: string): void {
  if (typeof value === 'string') {
    const problem = textProblem(value);
    if (problem) throw invalid(`${where} ${problem}`, 'invalidValue');
  } else if (Array.isArray(value)) {
    value.forEach((element, index) => {
      refuseControlCharacters(element, `${where}[${index}]`);
    });
  } else if (value !== null && typeof value === 'object') {
    for (const [key, element] of Object.entries(value)) {
      refuseControlCharacters(key, `a key in ${where}`);
      refuseControlCharacters(element, `${where}.${key}`);
    }
  }
}

function decodedPath(req: IncomingMessage): string {
  try {
    return decodeURIComponent(pathnameOf(req));
  } catch {
    throw invalid('the URL path is not valid percent-encoded UTF-8', 'invalidValue');
  }
}

/**
 * Refuses control characters in the path, the query string and a parsed body. Takes Node's request with
 * the query parsed, so it serves the Express edges and the SCIM edge (served without Express) alike.
 */
export function refuseHostileText(
  req: IncomingMessage & { query: unknown; body?: unknown },
  _res: ServerResponse,
  next: () => void,
): void {
  refuseControlCharacters(decodedPath(req), 'the URL path');
  refuseControlCharacters(req.query, 'the query');
  if (req.body !== undefined) refuseControlCharacters(req.body, 'the body');
  next();
}

/** Largest integer a query parameter (startIndex, count, days…) may carry: PostgreSQL's int4. */
export const MAX_QUERY_INTEGER = 2_147_483_647;

/** A decimal integer up to MAX_QUERY_INTEGER (smaller ones are raised to min), or a 400 `invalidValue`. */
export function boundedInteger(raw: string, name: string, min = Number.MIN_SAFE_INTEGER): number {
  if (!/^-?\d+$/.test(raw)) throw invalid(`"${name}" must be an integer`, 'invalidValue');
  const value = Number(raw);
  if (value > MAX_QUERY_INTEGER) {
    throw invalid(`"${name}" must be at most ${MAX_QUERY_INTEGER}`, 'invalidValue');
  }
  return Math.max(min, value);
}

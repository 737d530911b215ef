import type { Readable } from 'node:stream';
import busboy from 'busboy';
import type { Request } from 'express';
import { DomainError, invalid } from '../errors.js';

/*
 * An import file as an HTTP request carries it: the body itself (`text/csv`, for scripts and the API),
 * or one file of a `multipart/form-data` form (the console's upload). busboy (the parser multer is
 * built on) streams the file, so a large file is parsed as it arrives and never held whole.
 */

/**
 * Above the row cap's typical size (200,000 rows of about 60 bytes, 12 MB): an accident, not an
 * import, beyond it. Checked as the bytes arrive, before anything is parsed.
 */
export const MAX_IMPORT_BYTES = 16 * 1024 * 1024;

export interface Upload {
  file: AsyncIterable<Buffer>;
  /** Form fields sent before the file (the console's options). */
  fields: Record<string, string>;
}

const tooLarge = () =>
  new DomainError('too_large', `an import file may have at most ${MAX_IMPORT_BYTES / 1024 / 1024} MB`);

export async function readUpload(req: Request): Promise<Upload> {
  if (req.is('text/csv') || req.is('text/plain')) return { file: limited(req), fields: {} };
  if (req.is('multipart/form-data')) return multipartFile(req);
  throw new DomainError(
    'unsupported_media_type',
    'send the file as the body (Content-Type: text/csv) or as a multipart/form-data upload',
  );
}

async function* limited(stream: Readable): AsyncIterable<Buffer> {
  let bytes = 0;
  for await (const chunk of stream) {
    bytes += (chunk as Buffer).length;
    if (bytes > MAX_IMPORT_BYTES) {
      stream.destroy();
      throw tooLarge();
    }
    yield chunk as Buffer;
  }
}

function multipartFile(req: Request): Promise<Upload> {
  return new Promise((resolve, reject) => {
    let parser: busboy.Busboy;
    try {
      parser = busboy({ headers: req.headers, limits: { files: 1, fields: 20, fileSize: MAX_IMPORT_BYTES } });
    } catch (error) {
      reject(invalid(`not a valid multipart upload: ${(error as Error).message}`));
      return;
    }
    const fields: Record<string, string> = {};
    let found = false;
    parser.on('field', (name, value) => {
      fields[name] = value;
    });
    parser.on('file', (_name, stream) => {
      found = true;
      stream.on('limit', () => stream.destroy(tooLarge()));
      resolve({ file: stream, fields });
    });
    parser.on('close', () => {
      if (!found) reject(invalid('the upload has no file'));
    });
    parser.on('error', (error) =>
      reject(invalid(`not a valid multipart upload: ${(error as Error).message}`)),
    );
    req.pipe(parser);
  });
}

/** `true`, `1`, `yes`, `on` (a checked checkbox) are yes; absent or anything else, no. */
export function flag(value: unknown): boolean {
  return typeof value === 'string' && ['true', '1', 'yes', 'on'].includes(value.toLowerCase());
}

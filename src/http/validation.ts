import type { z } from 'zod';
import { invalid } from '../errors.js';

/**
 * Parses input with a zod schema or throws the shared `invalid` error naming the first problem: the
 * one way an edge turns a schema's verdict into the error vocabulary (the same schemas describe the
 * admin API in its OpenAPI document).
 */
export function parsedOrInvalid<T>(schema: z.ZodType<T>, input: unknown): T {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  // Messages name their field already ("role must be one of …"); only a bare one gets it in front.
  const field = String(issue.path[0] ?? '');
  const named = issue.message.startsWith(field) || issue.message.startsWith(`"${field}"`);
  throw invalid(field && !named ? `${field}: ${issue.message}` : issue.message);
}

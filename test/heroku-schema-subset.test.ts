import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { extractSubset, LINKS_IDSYNC_CALLS, SUBSET_PATH } from './support/heroku-schema-subset.js';
import { herokuPublicSchema, missing } from './support/prerequisites.js';

const subset = JSON.parse(readFileSync(SUBSET_PATH, 'utf8')) as {
  definitions: Record<string, { links?: { title: string }[] }>;
};

describe('the checked-in Heroku schema subset', () => {
  it('documents every Platform API call the connector makes', () => {
    for (const [definition, title] of LINKS_IDSYNC_CALLS) {
      expect(subset.definitions[definition]?.links?.map((l) => l.title)).toContain(title);
    }
  });
});

describe('the checked-in Heroku schema subset against the full public schema', () => {
  if (missing(herokuPublicSchema)) return;
  it('is exactly what the public schema gives for those calls (regenerate: see heroku-schema-subset.ts)', () => {
    const full = JSON.parse(readFileSync(herokuPublicSchema.location, 'utf8'));
    expect(subset).toEqual(extractSubset(full));
  });
});

import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { it } from 'vitest';

/*
 * What some tests need beyond the README's prerequisites for `npm test`: the SCIM conformance suites and
 * the full public Heroku schema (kept in ../shared beside the repository, as CI lays it out) and a
 * Chromium for the browser tests. A fresh clone has none of the first two; its `npm test` skips those
 * tests and says which setting enables them. CI sets IDSYNC_REQUIRE_ALL_TESTS=1, which turns each
 * such skip into a failure, so a missing suite can never pass CI silently.
 */

export interface Prerequisite {
  /** What the tests need, for the skip note. */
  what: string;
  /** The environment variable that points at it. */
  setting: string;
  /** Where it was looked for. */
  location: string;
  available: boolean;
}

const beside = (relative: string) => fileURLToPath(new URL(`../../../${relative}`, import.meta.url));

function lookFor(what: string, setting: string, candidates: string[]): Prerequisite {
  const configured = process.env[setting];
  const locations = configured ? [configured] : candidates;
  const found = locations.find((location) => existsSync(location));
  return { what, setting, location: found ?? locations.join(' or '), available: found !== undefined };
}

export const conformanceSuites: Prerequisite = lookFor(
  "the SCIM conformance suites (Microsoft's Postman collection, Okta's spec test)",
  'IDSYNC_CONFORMANCE_DIR',
  [beside('shared/conformance')],
);

export const herokuPublicSchema: Prerequisite = lookFor(
  'the full public Heroku Platform API schema',
  'IDSYNC_HEROKU_SCHEMA',
  [beside('shared/reference/heroku-platform-api/schema.json')],
);

export const chromium: Prerequisite = lookFor('a Chromium for the browser tests', 'CHROMIUM_PATH', [
  '/usr/bin/chromium',
  '/usr/bin/chromium-browser',
  '/snap/bin/chromium',
  '/Applications/Chromium.app/Contents/MacOS/Chromium',
  '/Applications/Google Chrome.app/Contents/MacOS/Google Chrome',
]);

export const requireAllTests = process.env.IDSYNC_REQUIRE_ALL_TESTS === '1';

export function missingNote(prerequisite: Prerequisite): string {
  return `needs ${prerequisite.what}: not found at ${prerequisite.location}; set ${prerequisite.setting} to enable`;
}

/**
 * Call at the top of a describe body that cannot run without `prerequisite`. Returns true when the
 * describe should return at once: its one test is then reported as skipped with the reason and the
 * setting that enables it (or, under IDSYNC_REQUIRE_ALL_TESTS, as failed).
 */
export function missing(prerequisite: Prerequisite): boolean {
  if (prerequisite.available) return false;
  const note = missingNote(prerequisite);
  if (requireAllTests) {
    it(`requires ${prerequisite.what}`, () => {
      throw new Error(`${note} (IDSYNC_REQUIRE_ALL_TESTS=1 makes this a failure)`);
    });
  } else {
    it(`requires ${prerequisite.what}`, (context) => context.skip(note));
  }
  return true;
}

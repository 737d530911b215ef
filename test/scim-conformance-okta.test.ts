import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { conformanceSuites, missing } from './support/prerequisites.js';
import { startScimServer } from './support/scim-server.js';

/*
 * A runner for Okta's SCIM 2.0 spec test (a Runscope export): request steps with {{variable}}
 * substitution, assertions on status, JSON properties and response time, and variables captured from
 * responses. The format and the initial variables are described in shared/conformance/README.md.
 */

interface Assertion {
  comparison: string;
  source: 'response_status' | 'response_json' | 'response_time';
  value: string | null;
  property?: string;
}

interface RequestStep {
  step_type: 'request';
  method: string;
  url: string;
  headers: Record<string, string[]>;
  body?: string;
  assertions: Assertion[];
  variables?: { source: string; name: string; property: string }[];
  scripts?: string[];
}

type Step = RequestStep | { step_type: 'pause' };

function substitute(text: string, variables: Map<string, string>): string {
  return text.replace(/\{\{(\w+)\}\}/g, (whole, name: string) => variables.get(name) ?? whole);
}

/** The query part percent-encoded, as Runscope sends it (filters contain spaces and quotes). */
function encodeUrl(url: string): string {
  const [base, query] = url.split('?', 2);
  if (query === undefined) return url;
  const encoded = query
    .split('&')
    .map((pair) => {
      const [key, ...rest] = pair.split('=');
      return `${key}=${encodeURIComponent(rest.join('='))}`;
    })
    .join('&');
  return `${base}?${encoded}`;
}

/** `Resources[0].name.familyName` → the value at that path. */
function property(json: unknown, path: string): unknown {
  let current: unknown = json;
  for (const part of path.match(/[^.[\]]+/g) ?? []) {
    if (current === null || current === undefined) return undefined;
    current = (current as Record<string, unknown>)[part];
  }
  return current;
}

function check(assertion: Assertion, actual: unknown, expected: string | null): boolean {
  switch (assertion.comparison) {
    case 'equal':
      return String(actual) === String(expected);
    case 'equal_number':
      return Number(actual) === Number(expected);
    case 'not_empty':
      return (
        actual !== undefined &&
        actual !== null &&
        actual !== '' &&
        !(Array.isArray(actual) && actual.length === 0)
      );
    case 'is_a_number':
      return typeof actual === 'number' && Number.isFinite(actual);
    case 'has_value':
    case 'contains':
      return Array.isArray(actual)
        ? actual.map(String).includes(String(expected))
        : String(actual).includes(String(expected));
    case 'is_less_than':
      return Number(actual) < Number(expected);
    default:
      throw new Error(`the runner does not know the comparison "${assertion.comparison}"`);
  }
}

describe("Okta's SCIM 2.0 spec test", async () => {
  if (missing(conformanceSuites)) return;
  const server = await startScimServer();
  const spec = JSON.parse(
    readFileSync(path.join(conformanceSuites.location, 'okta', 'Okta-SCIM-20-SPEC-Test.json'), 'utf8'),
  ) as {
    steps: Step[];
  };

  it('passes all 52 assertions', async () => {
    // Step 1 expects at least one user to exist already.
    const seed = await server.request('POST', '/Users', {
      schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'],
      userName: 'seed.user@example.com',
      name: { givenName: 'Seed', familyName: 'User' },
      emails: [{ value: 'seed.user@example.com', primary: true, type: 'work' }],
      active: true,
    });
    expect(seed.status).toBe(201);

    const unique = randomBytes(4).toString('hex');
    const randomEmail = `okta.${unique}@example.com`;
    const variables = new Map<string, string>([
      ['SCIMBaseURL', server.baseUrl],
      ['auth', `Bearer ${server.token}`],
      ['randomGivenName', `Given${unique}`],
      ['randomFamilyName', `Family${unique}`],
      ['randomEmail', randomEmail],
      ['randomUsername', randomEmail],
      ['randomUsernameCaps', randomEmail.toUpperCase()],
      ['InvalidUserEmail', 'abcdefgh@atko.com'],
      ['UserIdThatDoesNotExist', '010101001010101011001010101011'],
    ]);

    let passed = 0;
    const failures: string[] = [];
    for (const step of spec.steps) {
      if (step.step_type !== 'request') continue;
      const url = encodeUrl(substitute(step.url, variables));
      const headers = Object.fromEntries(
        Object.entries(step.headers).map(([name, values]) => [name, substitute(values[0] ?? '', variables)]),
      );
      const started = performance.now();
      const response = await fetch(url, {
        method: step.method,
        headers,
        body: step.body ? substitute(step.body, variables) : undefined,
      });
      const text = await response.text();
      const elapsed = performance.now() - started;
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
      for (const assertion of step.assertions) {
        const actual =
          assertion.source === 'response_status'
            ? response.status
            : assertion.source === 'response_time'
              ? elapsed
              : property(json, assertion.property ?? '');
        const expected = assertion.value === null ? null : substitute(assertion.value, variables);
        if (check(assertion, actual, expected)) passed += 1;
        else {
          failures.push(
            `${step.method} ${url}: ${assertion.source} ${assertion.property ?? ''} ${assertion.comparison} ${expected} (got ${JSON.stringify(actual)})`,
          );
        }
      }
      for (const variable of step.variables ?? []) {
        variables.set(variable.name, String(property(json, variable.property)));
      }
      // The Groups step's script: with totalResults ≥ 1, Resources must be an array.
      if ((step.scripts ?? []).some((s) => s.includes('Array.isArray(res)'))) {
        const data = json as { totalResults?: number; Resources?: unknown };
        if ((data.totalResults ?? 0) >= 1 && !Array.isArray(data.Resources))
          failures.push('Groups: Resources is not an array');
      }
    }
    console.log(`okta-spec: ${passed} passed, ${failures.length} failed`);
    expect(failures).toEqual([]);
    expect(passed).toBe(52);
  });
});

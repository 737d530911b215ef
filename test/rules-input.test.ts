import { describe, expect, it } from 'vitest';
import { DomainError } from '../src/errors.js';
import { readRuleInput } from '../src/reconcile/rules.js';

/** What an admin reads when a rule (admin API body or CLI flags) is wrong: one line naming the field once. */
function refusal(body: unknown): string {
  try {
    readRuleInput(body);
  } catch (error) {
    expect(error).toBeInstanceOf(DomainError);
    expect((error as DomainError).kind).toBe('invalid');
    return (error as Error).message;
  }
  throw new Error('accepted');
}

describe('assignment rule input', () => {
  it('accepts Heroku-style team and app names', () => {
    expect(
      readRuleInput({ target: 'team', idpGroup: 'Eng', team: 'platform-eng', role: 'admin' }),
    ).toMatchObject({
      team: 'platform-eng',
    });
    expect(
      readRuleInput({ target: 'app', idpGroup: 'SRE', app: 'api', permissions: ['deploy'] }),
    ).toMatchObject({
      app: 'api',
      permissions: ['deploy'],
    });
  });

  it('refuses names a platform cannot have, and says what a name may be', () => {
    expect(refusal({ target: 'team', idpGroup: 'Eng', team: 'Bad Team!', role: 'member' })).toBe(
      'team must be lowercase letters, digits and dashes (as Heroku names teams), e.g. core or platform-eng',
    );
    expect(refusal({ target: 'app', idpGroup: 'Eng', app: 'My_App', permissions: ['view'] })).toMatch(
      /^app must be 3 to 30 lowercase letters/,
    );
  });

  it('names the field once, also for a bad permission in a list', () => {
    expect(refusal({ target: 'team', idpGroup: 'Eng', team: 'core', role: 'owner' })).toBe(
      'role must be one of admin, member, viewer',
    );
    expect(refusal({ target: 'app', idpGroup: 'Eng', app: 'api', permissions: ['deplo'] })).toBe(
      'permissions must be among view, deploy, operate, manage',
    );
  });
});

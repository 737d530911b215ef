import { describe, expect, it } from 'vitest';
import {
  expandPathlessOperation,
  normaliseManagerValue,
  normaliseMemberValues,
  normaliseOperationName,
  normaliseScalarBoolean,
  normaliseStringBooleans,
} from '../src/scim/dialects.js';
import { ScimError } from '../src/scim/errors.js';

const ENTERPRISE = 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User';

describe('Entra dialect normalisers', () => {
  it('Entra: capitalised op names become RFC names; anything else is invalidSyntax', () => {
    expect(['Add', 'Replace', 'Remove', 'add'].map(normaliseOperationName)).toEqual([
      'add',
      'replace',
      'remove',
      'add',
    ]);
    expect(() => normaliseOperationName('Merge')).toThrow(ScimError);
    expect(() => normaliseOperationName(undefined)).toThrow(/not a PATCH operation/);
  });

  it('Entra: "True"/"False" strings for boolean attributes become booleans, nothing else changes', () => {
    const names = new Set(['active', 'primary']);
    expect(
      normaliseStringBooleans(
        { active: 'False', title: 'True', emails: [{ primary: 'TRUE', value: 'x' }] },
        names,
      ),
    ).toEqual({ active: false, title: 'True', emails: [{ primary: true, value: 'x' }] });
    expect(normaliseStringBooleans({ active: 'maybe' }, names)).toEqual({ active: 'maybe' });
    expect(normaliseScalarBoolean('False')).toBe(false);
    expect(normaliseScalarBoolean('no')).toBe('no');
  });

  it('Entra: a pathless replace with dotted and URN-qualified keys splits into one operation per key', () => {
    expect(
      expandPathlessOperation({
        op: 'replace',
        path: undefined,
        value: { 'name.givenName': 'Ada', [`${ENTERPRISE}:employeeNumber`]: '7' },
      }),
    ).toEqual([
      { op: 'replace', path: 'name.givenName', value: 'Ada' },
      { op: 'replace', path: `${ENTERPRISE}:employeeNumber`, value: '7' },
    ]);
  });

  it('Entra: the manager set with a bare id becomes {value}, and "" clears it', () => {
    expect(normaliseManagerValue('26118915-6090-4610-87e4-49d8ca9f808d')).toEqual({
      value: '26118915-6090-4610-87e4-49d8ca9f808d',
    });
    expect(normaliseManagerValue('')).toBeUndefined();
    expect(normaliseManagerValue({ value: '' })).toBeUndefined();
    expect(normaliseManagerValue({ value: 'm1' })).toEqual({ value: 'm1' });
  });

  it('Entra: member removal values [{value}] read as member ids', () => {
    expect(normaliseMemberValues([{ value: 'a' }, { value: 'b', display: 'B' }])).toEqual([
      { id: 'a', display: undefined },
      { id: 'b', display: 'B' },
    ]);
  });
});

describe('Okta dialect normalisers', () => {
  it('Okta: deactivation as a pathless replace {active:false} becomes a path operation', () => {
    expect(expandPathlessOperation({ op: 'replace', path: undefined, value: { active: false } })).toEqual([
      { op: 'replace', path: 'active', value: false },
    ]);
  });

  it('Okta: a group rename carrying id and displayName keeps both keys (id is ignored later as read-only)', () => {
    expect(
      expandPathlessOperation({ op: 'replace', path: undefined, value: { id: 'g1', displayName: 'New' } }),
    ).toEqual([
      { op: 'replace', path: 'id', value: 'g1' },
      { op: 'replace', path: 'displayName', value: 'New' },
    ]);
  });

  it('a pathless operation whose value is not an object is invalidValue; a path is left alone', () => {
    expect(() => expandPathlessOperation({ op: 'add', path: undefined, value: 'x' })).toThrow(
      /needs an object/,
    );
    const withPath = { op: 'replace' as const, path: 'title', value: 'x' };
    expect(expandPathlessOperation(withPath)).toEqual([withPath]);
  });
});

describe("Microsoft's test collection's member shapes", () => {
  it('reads displayName as display, and a bare id string as a member', () => {
    expect(normaliseMemberValues([{ value: 'a', displayName: 'new User' }])).toEqual([
      { id: 'a', display: 'new User' },
    ]);
    expect(normaliseMemberValues('string id 1')).toEqual([{ id: 'string id 1', display: undefined }]);
    expect(() => normaliseMemberValues([{ display: 'no value' }])).toThrow(/string "value"/);
  });
});

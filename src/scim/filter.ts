import { textProblem } from '../http/hostile-input.js';
import { ScimError } from './errors.js';

/*
 * RFC 7644 §3.4.2.2 filter grammar, parsed into a tree that keeps and/or/not exactly as written.
 *
 * Why not scimmy's Filter: it expands filters into disjunctive normal form and gets `not` over a group
 * wrong (`a and not (b or c)` becomes `(a and not b) or (a and not c)`), rejects `not (…)` inside
 * parentheses, and accepts trailing garbage such as `userName eq "x" or` or a comparison without a value.
 * A filter decides who is found, deactivated or left alone, so its meaning has to be exact. scimmy is
 * still used for the schemas and for validating resources.
 */

export type CompareOperator = 'eq' | 'ne' | 'co' | 'sw' | 'ew' | 'gt' | 'lt' | 'ge' | 'le';
export type FilterValue = string | number | boolean | null;

/** An attribute path as written: optional schema URN, attribute, optional sub-attribute. */
export interface AttributePath {
  schema: string | undefined;
  /** One or two names, as written (case is resolved against the schema later). */
  names: string[];
}

export type FilterNode =
  | { kind: 'and' | 'or'; left: FilterNode; right: FilterNode }
  | { kind: 'not'; operand: FilterNode }
  | { kind: 'compare'; path: AttributePath; operator: CompareOperator; value: FilterValue }
  | { kind: 'present'; path: AttributePath }
  /** `emails[type eq "work"]`: some element of a multi-valued attribute matches the inner filter. */
  | { kind: 'valuePath'; path: AttributePath; filter: FilterNode };

const COMPARE_OPERATORS = new Set(['eq', 'ne', 'co', 'sw', 'ew', 'gt', 'lt', 'ge', 'le']);
const MAX_FILTER_LENGTH = 4096;
const MAX_DEPTH = 32;

type Token =
  | { type: 'word'; text: string; at: number }
  | { type: 'string'; text: string; at: number }
  | { type: '(' | ')' | '[' | ']'; at: number };

function invalid(message: string): ScimError {
  return new ScimError(400, 'invalidFilter', message);
}

function tokenize(input: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < input.length) {
    const ch = input[i]!;
    if (/\s/.test(ch)) {
      i += 1;
    } else if (ch === '(' || ch === ')' || ch === '[' || ch === ']') {
      tokens.push({ type: ch, at: i });
      i += 1;
    } else if (ch === '"') {
      let j = i + 1;
      let escaped = false;
      while (j < input.length && (escaped || input[j] !== '"')) {
        escaped = !escaped && input[j] === '\\';
        j += 1;
      }
      if (j >= input.length) throw invalid(`unterminated string starting at position ${i + 1}`);
      let text: string;
      try {
        text = JSON.parse(input.slice(i, j + 1)) as string;
      } catch {
        throw invalid(`invalid escape in string starting at position ${i + 1}`);
      }
      // An escape (`\u0000`) decodes to what the query string itself may not carry: refused the same way,
      // before PostgreSQL refuses the text with an error.
      const problem = textProblem(text);
      if (problem) throw invalid(`the string starting at position ${i + 1} ${problem}`);
      tokens.push({ type: 'string', text, at: i });
      i = j + 1;
    } else {
      // A bare word: an attribute path, an operator, a keyword or an unquoted value (Microsoft's
      // tests send `userName sw O` and unquoted timestamps). It ends at space or bracket.
      let j = i;
      while (j < input.length && !/[\s()[\]"]/.test(input[j]!)) j += 1;
      // `emails[type eq "work"].value`: a sub-attribute after a closing bracket starts with '.'.
      tokens.push({ type: 'word', text: input.slice(i, j), at: i });
      i = j;
    }
  }
  return tokens;
}

const ATTRIBUTE_NAME = /^[A-Za-z][\w$-]*$/;

/** Splits `urn:…:User:manager.value` or `name.givenName` into schema and names. */
export function parseAttributePath(text: string): AttributePath {
  let schema: string | undefined;
  let rest = text;
  if (/^urn:/i.test(text)) {
    const cut = text.lastIndexOf(':');
    schema = text.slice(0, cut);
    rest = text.slice(cut + 1);
  }
  const names = rest.split('.');
  if (names.length > 2 || names.some((n) => !ATTRIBUTE_NAME.test(n))) {
    throw invalid(`"${text}" is not a valid attribute path`);
  }
  return { schema, names };
}

class Parser {
  private position = 0;
  private depth = 0;

  constructor(
    private readonly tokens: Token[],
    private readonly source: string,
  ) {}

  parse(): FilterNode {
    const node = this.parseOr();
    const extra = this.tokens[this.position];
    if (extra) throw invalid(`unexpected "${this.describe(extra)}" at position ${extra.at + 1}`);
    return node;
  }

  private parseOr(): FilterNode {
    let left = this.parseAnd();
    while (this.peekKeyword('or')) {
      this.position += 1;
      left = { kind: 'or', left, right: this.parseAnd() };
    }
    return left;
  }

  private parseAnd(): FilterNode {
    let left = this.parseUnary();
    while (this.peekKeyword('and')) {
      this.position += 1;
      left = { kind: 'and', left, right: this.parseUnary() };
    }
    return left;
  }

  private parseUnary(): FilterNode {
    if (++this.depth > MAX_DEPTH) throw invalid('filter is nested too deeply');
    try {
      if (this.peekKeyword('not')) {
        this.position += 1;
        this.expect('(');
        const operand = this.parseOr();
        this.expect(')');
        return { kind: 'not', operand };
      }
      if (this.peek()?.type === '(') {
        this.position += 1;
        const inner = this.parseOr();
        this.expect(')');
        return inner;
      }
      return this.parseAttributeExpression();
    } finally {
      this.depth -= 1;
    }
  }

  private parseAttributeExpression(): FilterNode {
    const token = this.next('an attribute');
    if (token.type !== 'word') throw invalid(`expected an attribute at position ${token.at + 1}`);
    const path = parseAttributePath(token.text);
    if (this.peek()?.type === '[') {
      this.position += 1;
      const filter = this.parseOr();
      this.expect(']');
      const following = this.peek();
      // `emails[type eq "work"].value co "x"`: compare a sub-attribute of the same element.
      if (following?.type === 'word' && following.text.startsWith('.')) {
        this.position += 1;
        const sub = parseAttributePath(following.text.slice(1));
        const inner = this.parseComparison({ schema: undefined, names: sub.names });
        return { kind: 'valuePath', path, filter: { kind: 'and', left: filter, right: inner } };
      }
      return { kind: 'valuePath', path, filter };
    }
    return this.parseComparison(path);
  }

  private parseComparison(path: AttributePath): FilterNode {
    const operatorToken = this.next('an operator');
    const operator = operatorToken.type === 'word' ? operatorToken.text.toLowerCase() : '';
    if (operator === 'pr') return { kind: 'present', path };
    if (!COMPARE_OPERATORS.has(operator)) {
      throw invalid(
        `expected an operator (eq, ne, co, sw, ew, gt, lt, ge, le, pr) at position ${operatorToken.at + 1}`,
      );
    }
    const valueToken = this.next('a value');
    return { kind: 'compare', path, operator: operator as CompareOperator, value: this.valueOf(valueToken) };
  }

  private valueOf(token: Token): FilterValue {
    if (token.type === 'string') return token.text;
    if (token.type !== 'word') throw invalid(`expected a value at position ${token.at + 1}`);
    const lower = token.text.toLowerCase();
    if (lower === 'true') return true;
    if (lower === 'false') return false;
    if (lower === 'null') return null;
    if (/^-?\d+(\.\d+)?([eE][+-]?\d+)?$/.test(token.text)) return Number(token.text);
    if (lower === 'and' || lower === 'or' || lower === 'not') {
      throw invalid(`expected a value at position ${token.at + 1}, found "${token.text}"`);
    }
    return token.text;
  }

  private peek(): Token | undefined {
    return this.tokens[this.position];
  }

  private peekKeyword(keyword: string): boolean {
    const token = this.peek();
    return token?.type === 'word' && token.text.toLowerCase() === keyword;
  }

  private next(expected: string): Token {
    const token = this.tokens[this.position];
    if (!token) throw invalid(`filter "${this.source}" ends where ${expected} was expected`);
    this.position += 1;
    return token;
  }

  private expect(type: '(' | ')' | ']'): void {
    const token = this.next(`"${type}"`);
    if (token.type !== type) throw invalid(`expected "${type}" at position ${token.at + 1}`);
  }

  private describe(token: Token): string {
    return token.type === 'word' || token.type === 'string' ? token.text : token.type;
  }
}

export function parseFilter(input: string): FilterNode {
  if (input.length > MAX_FILTER_LENGTH)
    throw invalid(`filter is longer than ${MAX_FILTER_LENGTH} characters`);
  const tokens = tokenize(input);
  if (tokens.length === 0) throw invalid('filter is empty');
  return new Parser(tokens, input).parse();
}

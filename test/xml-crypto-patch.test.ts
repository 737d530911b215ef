import { DOMParser } from '@xmldom/xmldom';
import { describe, expect, it } from 'vitest';
import { SignedXml } from 'xml-crypto';
import xpath from 'xpath';

/*
 * patches/xml-crypto+6.3.2.patch replaces the XPath that finds the element a signature Reference names
 * (`//*[@*[local-name(.)='<Id|ID|id>']='<id>']`) by a tree walk. It must select exactly what the XPath
 * selects — the signature-wrapping defence (more than one element with the id throws) depends on it.
 */
const documents = [
  '<a ID="x"><b Id="x"/><c id="x" ID="y"/></a>',
  '<a xmlns:ID="x"><b p:ID="x" xmlns:p="urn:p"/></a>',
  '<r><s:A xmlns:s="urn:s" ID="_1"><s:B ID="_2"/></s:A><X><Y ID="_1"/></X></r>',
  '<r ID=""><q ID="v"/><q2><q3 Id="w"/></q2></r>',
];
const ids = ['x', 'y', '_1', '_2', 'v', 'w', 'urn:p', 'none'];

type Reference = { uri: string; transforms: string[]; digestAlgorithm: string; digestValue: string };
type Internals = { validateReference(ref: Reference & { validationError?: Error }, doc: Document): unknown };

describe('the xml-crypto Reference lookup patch', () => {
  it('finds the same element as the XPath it replaces, and still throws on a duplicated id', () => {
    let cases = 0;
    for (const text of documents) {
      const doc = new DOMParser().parseFromString(text, 'text/xml') as unknown as Document;
      for (const id of ids) {
        const byXpath = ['Id', 'ID', 'id'].flatMap(
          (attr) =>
            xpath.select(`//*[@*[local-name(.)='${attr}']='${id}']`, doc as unknown as Node) as Node[],
        );
        const ref: Reference & { validationError?: Error } = {
          uri: `#${id}`,
          transforms: ['http://www.w3.org/2001/10/xml-exc-c14n#'],
          digestAlgorithm: 'http://www.w3.org/2001/04/xmlenc#sha256',
          digestValue: 'AAAA',
        };
        const validate = () => (new SignedXml() as unknown as Internals).validateReference(ref, doc);
        cases++;
        if (byXpath.length > 1) {
          expect(validate, `${text} #${id}`).toThrow(/multiple elements with the same value/);
          continue;
        }
        expect(validate(), `${text} #${id}`).toBeUndefined();
        if (byXpath.length === 0) {
          expect(ref.validationError?.message).toMatch(/could not find such element/);
        } else {
          // Found, canonicalised and hashed: only the (deliberately wrong) digest fails, and the element
          // that was hashed is the one the XPath selects.
          expect(ref.validationError?.message).toMatch(/calculated digest is/);
          const hashed = xpath.select1((ref as unknown as { xpath: string }).xpath, doc as unknown as Node);
          expect(hashed).toBe(byXpath[0]);
        }
      }
    }
    expect(cases).toBe(documents.length * ids.length);
  });
});

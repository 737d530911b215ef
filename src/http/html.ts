/** Escapes text for HTML and XML element content and attribute values. */
export function escapeHtml(value: string): string {
  return value.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** A plain, readable page: idsync's HTML is server-rendered with a little CSS. */
export function htmlPage(title: string, body: string, width = '36rem'): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)} — idsync</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:${width};margin:3rem auto;padding:0 1rem;color:#222}
table{border-collapse:collapse;width:100%;margin:.5rem 0 1.5rem}td,th{text-align:left;padding:.3rem .6rem;border-bottom:1px solid #ddd}
code{background:#f3f3f3;padding:.2rem .4rem;word-break:break-all}.new{background:#eef8ee;padding:1rem;border:1px solid #9c9}</style>
</head><body><h1>${escapeHtml(title)}</h1>${body}</body></html>`;
}

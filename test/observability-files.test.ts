import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { registry } from '../src/metrics/registry.js';

const root = path.resolve(import.meta.dirname, '..');
const ALERTS = path.join(root, 'deploy/prometheus/alerts.yml');
const DASHBOARD = path.join(root, 'deploy/grafana/idsync.json');

/** Every series name the registry exports: histograms as their _bucket, _sum and _count series. */
async function exportedSeries(): Promise<Set<string>> {
  const names = new Set<string>();
  for (const metric of await registry.getMetricsAsJSON()) {
    if (String(metric.type) === 'histogram')
      for (const suffix of ['_bucket', '_sum', '_count']) names.add(metric.name + suffix);
    else names.add(metric.name);
  }
  return names;
}

/** Metric names a PromQL expression reads (idsync's own and Node's process metrics). */
function metricNamesIn(expression: string): string[] {
  return [...expression.matchAll(/\b((?:idsync|process|nodejs)_[a-zA-Z0-9_]+)\b/g)].map((m) => m[1]!);
}

interface AlertRule {
  alert: string;
  expr: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

describe('Prometheus alert rules and the Grafana dashboard', () => {
  const rules = (parse(readFileSync(ALERTS, 'utf8')) as { groups: { rules: AlertRule[] }[] }).groups.flatMap(
    (g) => g.rules,
  );
  const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as {
    panels: { type: string; title: string; targets?: { expr: string }[] }[];
  };
  const queries = dashboard.panels.flatMap((p) =>
    (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr })),
  );

  it('alerts on what the issue asks for, each with a severity and a summary', () => {
    const names = rules.map((r) => r.alert);
    for (const required of [
      'IdsyncOutboxLagging',
      'IdsyncDeprovisionFailing',
      'IdsyncWorkersStalled',
      'IdsyncOffboardingSlow',
      'IdsyncCriticalDriftOpen',
      'IdsyncPlatformCredentialStopped',
    ])
      expect(names).toContain(required);
    expect(new Set(names).size).toBe(names.length);
    for (const rule of rules) {
      expect(rule.labels?.severity, rule.alert).toMatch(/^(page|ticket)$/);
      expect(rule.annotations?.summary, rule.alert).toBeTruthy();
    }
  });

  it('reads in alert expressions and dashboard queries only metrics the registry defines', async () => {
    const exported = await exportedSeries();
    const used = [
      ...rules.map((r) => ({ where: `alert ${r.alert}`, expr: r.expr })),
      ...queries.map((q) => ({ where: `panel "${q.panel}"`, expr: q.expr })),
    ];
    const unknown = used.flatMap(({ where, expr }) =>
      metricNamesIn(expr)
        .filter((name) => !exported.has(name))
        .map((name) => `${where}: ${name}`),
    );
    expect(unknown).toEqual([]);
    // Every expression reads at least one metric (a typo in a name would otherwise pass unnoticed).
    for (const { where, expr } of used) expect(metricNamesIn(expr).length, where).toBeGreaterThan(0);
  });

  it('has a dashboard panel for every idsync metric', async () => {
    const shown = new Set(queries.flatMap((q) => metricNamesIn(q.expr)));
    const idsyncMetrics = (await registry.getMetricsAsJSON())
      .filter((m) => m.name.startsWith('idsync_'))
      .map((m) => ({ name: m.name, histogram: String(m.type) === 'histogram' }));
    const missing = idsyncMetrics.filter(
      ({ name, histogram }) => !(shown.has(name) || (histogram && shown.has(`${name}_bucket`))),
    );
    expect(missing.map((m) => m.name)).toEqual([]);
  });

  it('passes `promtool check rules` where promtool is installed', (context) => {
    const result = spawnSync('promtool', ['check', 'rules', ALERTS], { encoding: 'utf8' });
    if ((result.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') {
      console.warn(
        'promtool is not installed (Debian: apt-get install prometheus): rule syntax not checked by it',
      );
      context.skip();
      return;
    }
    expect(result.status, result.stdout + result.stderr).toBe(0);
    expect(result.stdout).toContain(`SUCCESS: ${rules.length} rules found`);
  });
});

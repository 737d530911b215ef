import type { Reporter, TestModule } from 'vitest/node';

/**
 * Prints why each test was skipped (the missing prerequisite and the setting that enables it), then
 * one closing line in the plain form CI reads ("tests: N passed, N failed, N skipped"), after vitest's
 * own summary, so the last line of `npm test` is the count.
 */
export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>, unhandledErrors: ReadonlyArray<unknown>) {
    let passed = 0;
    let failed = unhandledErrors.length;
    let skipped = 0;
    const notes: string[] = [];
    for (const module of testModules) {
      if (module.state() === 'failed' && [...module.children.allTests()].length === 0) failed += 1;
      for (const test of module.children.allTests()) {
        const result = test.result();
        if (result.state === 'passed') passed += 1;
        else if (result.state === 'failed') failed += 1;
        else {
          skipped += 1;
          if (result.state === 'skipped' && result.note) {
            notes.push(`skipped: ${module.moduleId.split('/').pop()}: ${result.note}`);
          }
        }
      }
    }
    const why = [...new Set(notes)].join('\n');
    process.stdout.write(
      `${why ? `\n${why}\n` : ''}\ntests: ${passed} passed, ${failed} failed, ${skipped} skipped\n`,
    );
  }
}

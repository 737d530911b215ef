import { SingleBar } from 'cli-progress';

/**
 * Progress of long CLI work (drift scan, import, jobs retry). People at a terminal get a bar on
 * stderr; scripts and log collectors get one JSON line per step on stderr, so stdout stays the
 * command's result (a report, a CSV) and can be piped.
 */
export interface Progress {
  /** Raises the total when it becomes known only as the work goes (pages, slices). */
  setTotal(total: number): void;
  advance(by?: number, step?: string): void;
  finish(): void;
}

export interface ProgressOptions {
  label: string;
  total: number;
  stream?: NodeJS.WriteStream;
  /** JSON lines are throttled to at most one per interval, besides the first and the last. */
  jsonIntervalMs?: number;
}

export function startProgress(options: ProgressOptions): Progress {
  const stream = options.stream ?? process.stderr;
  return stream.isTTY ? terminalBar(options, stream) : jsonLines(options, stream);
}

function terminalBar(options: ProgressOptions, stream: NodeJS.WriteStream): Progress {
  const bar = new SingleBar({
    stream,
    format: `${options.label} [{bar}] {value}/{total} {percentage}% · {eta_formatted} left {step}`,
    hideCursor: true,
    clearOnComplete: false,
  });
  bar.start(options.total, 0, { step: '' });
  return {
    setTotal: (total) => bar.setTotal(total),
    advance: (by = 1, step = '') => bar.increment(by, { step }),
    finish: () => bar.stop(),
  };
}

function jsonLines(options: ProgressOptions, stream: NodeJS.WriteStream): Progress {
  const interval = options.jsonIntervalMs ?? 1000;
  let total = options.total;
  let done = 0;
  let lastWritten = 0;
  const write = (step?: string) => {
    lastWritten = Date.now();
    stream.write(`${JSON.stringify({ progress: options.label, done, total, ...(step ? { step } : {}) })}\n`);
  };
  write();
  return {
    setTotal: (next) => {
      total = next;
    },
    advance: (by = 1, step) => {
      done += by;
      if (Date.now() - lastWritten >= interval) write(step);
    },
    finish: () => write(),
  };
}

import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../../src/log.js';

/** A real pino logger whose output a test can read back, to prove what is (not) logged. */
export function capturingLogger(level = 'debug'): { log: Logger; output: () => string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk, _encoding, callback) {
      chunks.push(chunk.toString());
      callback();
    },
  });
  return { log: createLogger(level, stream), output: () => chunks.join('') };
}

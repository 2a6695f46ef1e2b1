// A real winston logger whose JSON lines land in an array, so tests assert on what operators would read.
import { Writable } from 'node:stream';
import winston from 'winston';
import type { Logger } from '../../src/agent/log.js';

export type LogRecord = Record<string, unknown> & { level: string; message: string };

export function captureLog(): { log: Logger; records: LogRecord[] } {
  const records: LogRecord[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      records.push(JSON.parse(chunk.toString()) as LogRecord);
      done();
    },
  });
  const log = winston.createLogger({
    level: 'debug',
    format: winston.format.json(),
    transports: [new winston.transports.Stream({ stream })],
  });
  return { log, records };
}

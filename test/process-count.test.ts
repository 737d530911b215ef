import { describe, expect, it } from 'vitest';
import { databaseSharesThisMachine, defaultProcessCount } from '../src/runtime/process-count.js';

describe('the default process count', () => {
  it('leaves a core to a PostgreSQL that shares the machine, and takes every core otherwise', () => {
    const local = 'postgres://idsync:secret@127.0.0.1:5432/idsync';
    const remote = 'postgres://idsync:secret@db.internal:5432/idsync';
    expect(defaultProcessCount('start', undefined, 2)).toBe(1);
    expect(defaultProcessCount('serve', local, 2)).toBe(1);
    expect(defaultProcessCount('start', local, 8)).toBe(7);
    expect(defaultProcessCount('serve', remote, 2)).toBe(2);
    expect(defaultProcessCount('start', remote, 8)).toBe(8);
    // Never none, even on one core beside the database.
    expect(defaultProcessCount('start', undefined, 1)).toBe(1);
    // Workers scale out by running more of them.
    expect(defaultProcessCount('worker', remote, 8)).toBe(1);
  });

  it('tells a PostgreSQL on this machine from one elsewhere as postgres.js reaches it', () => {
    for (const url of [
      'postgres://u@localhost/db',
      'postgresql://u@LOCALHOST:5433/db',
      'postgres://u@db.localhost/db',
      'postgres://u@127.0.0.1/db',
      'postgres://u@127.1.2.3:6543/db',
      'postgres://u@127.1/db',
      'postgres://u@0.0.0.0/db',
    ])
      expect(databaseSharesThisMachine(url, undefined), url).toBe(true);
    for (const url of [
      'postgres://u@db.internal/db',
      'postgres://u@10.0.0.7:5432/db',
      'postgres://u@128.0.0.1/db',
      'postgres://u@127.0.0.1.example.com/db',
      'postgres://u@localhost.example.com/db',
    ])
      expect(databaseSharesThisMachine(url, undefined), url).toBe(false);
  });

  it('reads an empty host as postgres.js does: PGHOST (a directory is a Unix socket), else localhost', () => {
    expect(databaseSharesThisMachine('postgres:///db', undefined)).toBe(true);
    expect(databaseSharesThisMachine('postgres:///idsync?sslmode=disable', '/var/run/postgresql')).toBe(true);
    expect(databaseSharesThisMachine('postgres:///db', 'db.internal')).toBe(false);
    // A host in the URL wins over PGHOST.
    expect(databaseSharesThisMachine('postgres://u@db.internal/db', '/var/run/postgresql')).toBe(false);
  });
});

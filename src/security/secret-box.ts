import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Config } from '../config.js';
import { invalid } from '../errors.js';

/**
 * Seals secrets idsync must be able to use again (a platform API token) with AES-256-GCM: a copy of
 * the database alone does not reveal them, and a tampered ciphertext fails to open instead of yielding
 * a wrong token. Format: `v1.<iv>.<tag>.<ciphertext>`, base64url.
 */
export class SecretBox {
  private constructor(private readonly key: Buffer) {}

  static fromConfig(
    config: Pick<Config, 'secretKey' | 'dataDir'> & { databaseUrl?: string | undefined },
  ): SecretBox {
    if (config.secretKey) return new SecretBox(createHash('sha256').update(config.secretKey).digest());
    if (config.databaseUrl) {
      // With a shared database, API, workers and CLI may be on different machines: a key file on one
      // of them would seal tokens the others cannot open.
      throw invalid(
        'set IDSYNC_SECRET_KEY (the same in every idsync process) to store a platform token in a shared DATABASE_URL, or give the token with --token-env',
      );
    }
    const file = path.join(config.dataDir, 'secret.key');
    let material: string;
    try {
      material = readFileSync(file, 'utf8').trim();
    } catch {
      mkdirSync(config.dataDir, { recursive: true });
      try {
        writeFileSync(file, `${randomBytes(32).toString('base64url')}\n`, { mode: 0o600, flag: 'wx' });
      } catch (error) {
        // Another process created it first: use theirs.
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
      material = readFileSync(file, 'utf8').trim();
    }
    return new SecretBox(createHash('sha256').update(material).digest());
  }

  seal(plaintext: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.key, iv);
    const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return ['v1', iv, cipher.getAuthTag(), ciphertext]
      .map((p) => (typeof p === 'string' ? p : p.toString('base64url')))
      .join('.');
  }

  open(sealed: string): string {
    const [version, iv, tag, ciphertext] = sealed.split('.');
    if (version !== 'v1' || !iv || !tag || ciphertext === undefined) throw new Error('not a sealed secret');
    const decipher = createDecipheriv('aes-256-gcm', this.key, Buffer.from(iv, 'base64url'));
    decipher.setAuthTag(Buffer.from(tag, 'base64url'));
    return Buffer.concat([decipher.update(Buffer.from(ciphertext, 'base64url')), decipher.final()]).toString(
      'utf8',
    );
  }
}

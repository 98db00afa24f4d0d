// Gives Hydra (admin API at process.argv[2]) fresh RS256 signing keys for its
// access tokens and ID tokens before first use. Otherwise Hydra makes two
// RSA-4096 keys on the first request that needs them: 10-30 s of CPU on a
// 2-core machine, long enough for that request (toolgate's first key fetch)
// to time out. The keys live only in this run's in-memory Hydra.
import { generateKeyPairSync, randomUUID } from 'node:crypto';

const admin = new URL(process.argv[2]);
if (!/^(127\.|localhost$|\[::1\]$)/.test(admin.hostname)) throw new Error(`not a loopback URL: ${admin}`);
for (const set of ['hydra.jwt.access-token', 'hydra.openid.id-token']) {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), alg: 'RS256', use: 'sig' };
  const res = await fetch(new URL(`admin/keys/${set}`, admin), {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ keys: [jwk] }),
  });
  if (res.status !== 200) throw new Error(`PUT ${set}: HTTP ${res.status}: ${await res.text()}`);
  await res.body?.cancel();
}

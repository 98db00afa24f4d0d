// MCP Inspector's command line against toolgate with a bearer token from
// Ory Hydra (client credentials), and without one. Run by e2e/run.sh.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { env, createClient, clientCredentialsToken, jwtClaims, text, inspector } from './lib.mjs';

const show = r => `exit ${r.status}\nstdout: ${r.stdout?.slice(0, 600)}\nstderr: ${r.stderr?.slice(0, 600)}`;

let client;
let token; // carries images:write
let tokenNoScope;

test.before(async () => {
  client = await createClient({
    client_name: 'toolgate e2e inspector',
    grant_types: ['client_credentials'],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: 'images:write',
    audience: [env.mcpURL],
    metadata: { permissions: ['image_generation'] },
  });
  const creds = { clientId: client.client_id, clientSecret: client.client_secret, audience: env.mcpURL };
  token = await clientCredentialsToken({ ...creds, scope: 'images:write' });
  tokenNoScope = await clientCredentialsToken(creds);
});

test('inspector --cli tools/list with a bearer token lists the tools the policy grants', () => {
  const r = inspector(['--method', 'tools/list'], { token });
  assert.equal(r.status, 0, show(r));
  const names = r.out.result.tools.map(t => t.name).sort();
  assert.deepEqual(names, ['add', 'image_generation', 'whoami']);
  for (const t of r.out.result.tools) {
    assert.ok(t.description && t.inputSchema, `${t.name} has a description and an inputSchema`);
  }
});

test('inspector --cli tools/call add {"a":2,"b":3} returns 5', () => {
  const r = inspector(['--method', 'tools/call', '--tool-name', 'add', '--tool-args-json', '{"a":2,"b":3}'], { token });
  assert.equal(r.status, 0, show(r));
  assert.equal(text(r.out.result), '5');
});

test('inspector --cli tools/call whoami names the machine client', () => {
  const r = inspector(['--method', 'tools/call', '--tool-name', 'whoami'], { token });
  assert.equal(r.status, 0, show(r));
  const who = JSON.parse(text(r.out.result));
  assert.equal(who.sub, client.client_id);
  assert.equal(who.iss, env.hydraPublic);
  assert.deepEqual(who.permissions, ['image_generation']);
});

test('inspector --cli tools/call image_generation with images:write returns a PNG', () => {
  const r = inspector(['--method', 'tools/call', '--tool-name', 'image_generation', '--tool-args-json', '{"prompt":"inspector"}'], { token });
  assert.equal(r.status, 0, show(r).slice(0, 300));
  assert.ok(r.out.result.content.some(c => c.type === 'image' && c.mimeType === 'image/png'));
});

test('inspector --cli without a token reports the auth error (exit 3, auth_required, token_missing)', () => {
  const r = inspector(['--method', 'tools/list']);
  assert.equal(r.status, 3, show(r));
  assert.equal(r.err?.error?.code, 'auth_required', show(r));
  assert.match(r.err.error.message, /token_missing/);
});

test('inspector --cli with a forged token reports the auth error (exit 3, signature_invalid)', () => {
  const r = inspector(['--method', 'tools/list'], { token: token.slice(0, -6) + (token.endsWith('AAAAAA') ? 'BBBBBB' : 'AAAAAA') });
  assert.equal(r.status, 3, show(r));
  assert.equal(r.err?.error?.code, 'auth_required', show(r));
  assert.match(r.err.error.message, /signature_invalid|invalid_token/);
});

test('inspector --cli image_generation without images:write gets the step-up refusal (no interactive login)', () => {
  assert.ok(!(jwtClaims(tokenNoScope).scp ?? []).includes('images:write'));
  const r = inspector(['--method', 'tools/call', '--tool-name', 'image_generation', '--tool-args-json', '{"prompt":"x"}'], { token: tokenNoScope });
  assert.notEqual(r.status, 0, show(r));
  assert.match(r.stderr, /insufficient.scope/i, show(r));
  assert.match(r.stderr, /images:write/, show(r));
});

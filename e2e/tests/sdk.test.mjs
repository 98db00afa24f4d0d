// The official MCP TypeScript SDK as a real client of toolgate, with Ory
// Hydra as the authorization server: discovery from a 401, dynamic client
// registration, authorization code with PKCE S256, the insufficient_scope
// step-up, and client credentials. Run by e2e/run.sh.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import {
  env, loggingFetch, jwtClaims, jwtHeader, HydraClientCredentialsProvider,
  createClient, clientCredentialsToken, text, connectAs,
} from './lib.mjs';

const PNG = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** Runs fn; if the SDK had to send the user to authorize (a step-up), finishes that and runs fn again. */
async function withReauthorization(session, fn) {
  try {
    return { result: await fn(), reauthorized: false };
  } catch (err) {
    if (!(err instanceof UnauthorizedError)) throw err;
    await session.transport.finishAuth(session.provider.takeCode());
    return { result: await fn(), reauthorized: true };
  }
}

const names = tools => tools.map(t => t.name).sort();
const sessions = [];

test.after(async () => {
  for (const s of sessions) await s.client.close().catch(() => {});
});

let alice;

test('alice: 401 -> protected-resource metadata -> authorization-server metadata -> registration -> PKCE S256 code -> token -> MCP', async () => {
  alice = await connectAs('alice');
  sessions.push(alice);
  const { log, provider } = alice;
  assert.ok(alice.redirected, 'the first connect must need an authorization');
  const mcp = new URL(env.mcpURL);
  const hydra = new URL(env.hydraPublic);
  const at = (pred, what) => {
    const i = log.findIndex(pred);
    assert.notEqual(i, -1, `${what} not found in:\n${log.map(e => `${e.method} ${e.url} ${e.status}`).join('\n')}`);
    return i;
  };

  const i401 = at(e => e.url === mcp.href && e.method === 'POST' && e.status === 401 && e.auth === 'none', '401 from /mcp without a token');
  assert.match(log[i401].wwwAuthenticate, /^Bearer /);
  assert.match(log[i401].wwwAuthenticate, new RegExp(`resource_metadata="${mcp.origin}/\\.well-known/oauth-protected-resource/mcp"`));

  const iPRM = at(e => e.url === `${mcp.origin}/.well-known/oauth-protected-resource/mcp` && e.status === 200, 'protected-resource metadata');
  const iASM = at(e => e.url === `${hydra.origin}/.well-known/openid-configuration` && e.status === 200, 'authorization-server metadata (OIDC discovery)');
  const iReg = at(e => e.url === `${hydra.origin}/oauth2/register` && e.method === 'POST' && e.status === 201, 'dynamic client registration');
  const iAuth = at(e => e.auth === 'browser' && new URL(e.url).pathname === '/oauth2/auth', 'authorization request');
  const iTok = at(e => e.url === `${hydra.origin}/oauth2/token` && e.method === 'POST' && e.status === 200, 'token request');
  const iMCP = at(e => e.url === mcp.href && e.auth === 'bearer' && e.status === 200, 'an authorized MCP request');
  assert.ok(i401 < iPRM && iPRM < iASM && iASM < iReg && iReg < iAuth && iAuth < iTok && iTok < iMCP,
    `order: ${[i401, iPRM, iASM, iReg, iAuth, iTok, iMCP]}`);

  // RFC 8414 is asked first and Hydra has none: the SDK falls back to OIDC discovery.
  const rfc8414 = log.filter(e => e.url.startsWith(`${hydra.origin}/.well-known/oauth-authorization-server`));
  assert.ok(rfc8414.length >= 1 && rfc8414.every(e => e.status === 404), 'Hydra serves no RFC 8414 document');

  // The registration asked for the scopes toolgate advertises.
  const reg = JSON.parse(log[iReg].body);
  assert.equal(reg.scope, 'images:write');
  assert.equal(provider.registrations, 1);

  // The authorization request: PKCE S256, the advertised scope, the RFC 8707 resource.
  assert.equal(provider.authorizationURLs.length, 1);
  const q = provider.authorizationURLs[0].searchParams;
  assert.equal(q.get('response_type'), 'code');
  assert.equal(q.get('code_challenge_method'), 'S256');
  assert.match(q.get('code_challenge'), /^[A-Za-z0-9_-]{43}$/);
  assert.equal(q.get('scope'), 'images:write');
  assert.equal(q.get('resource'), env.mcpURL);
  assert.equal(q.get('client_id'), provider.clientInformation().client_id);
  const tokenBody = new URLSearchParams(log[iTok].body);
  assert.equal(tokenBody.get('grant_type'), 'authorization_code');
  assert.match(tokenBody.get('code_verifier'), /^[A-Za-z0-9._~-]{43,128}$/);

  // The token Hydra issued is what toolgate expects from an Auth0-style issuer.
  const token = provider.tokens().access_token;
  const h = jwtHeader(token);
  const c = jwtClaims(token);
  assert.equal(h.alg, 'RS256');
  assert.equal(c.iss, env.hydraPublic);
  assert.equal(c.sub, 'alice');
  assert.deepEqual(c.aud, [env.mcpURL]);
  assert.deepEqual(c.permissions, []);
  assert.equal(c.client_id, provider.clientInformation().client_id);
});

test('alice (no permissions) lists add and whoami only, and can call them', async () => {
  const { tools } = await alice.client.listTools();
  assert.deepEqual(names(tools), ['add', 'whoami']);
  const sum = await alice.client.callTool({ name: 'add', arguments: { a: 2, b: 3 } });
  assert.equal(sum.isError ?? false, false);
  assert.equal(text(sum), '5');
  const who = JSON.parse(text(await alice.client.callTool({ name: 'whoami', arguments: {} })));
  assert.equal(who.sub, 'alice');
  assert.equal(who.iss, env.hydraPublic);
  assert.equal(who.provider, 'oidc');
  assert.equal(who.client_id, alice.provider.clientInformation().client_id);
  assert.deepEqual(who.permissions, []);
});

test('alice calling image_generation gets "not found", never a 403 step-up, although her token has images:write', async () => {
  assert.deepEqual(jwtClaims(alice.provider.tokens().access_token).scp, ['images:write']);
  const before = alice.log.length;
  await assert.rejects(
    alice.client.callTool({ name: 'image_generation', arguments: { prompt: 'a red square' } }),
    err => /tool 'image_generation' not found/.test(err.message) && err.code === -32602,
  );
  assert.ok(alice.log.slice(before).every(e => e.status !== 403));
  assert.equal(alice.provider.authorizationURLs.length, 1, 'no re-authorization');
});

let bob;

test('bob (permission image_generation) sees image_generation too; his first consent leaves images:write out', async () => {
  bob = await connectAs('bob', { decline: ['images:write'] });
  sessions.push(bob);
  const { tools } = await bob.client.listTools();
  assert.deepEqual(names(tools), ['add', 'image_generation', 'whoami']);
  const c = jwtClaims(bob.provider.tokens().access_token);
  assert.deepEqual(c.permissions, ['image_generation']);
  assert.ok(!(c.scp ?? []).includes('images:write'), `first token scopes: ${JSON.stringify(c.scp)}`);
  const who = JSON.parse(text(await bob.client.callTool({ name: 'whoami', arguments: {} })));
  assert.equal(who.sub, 'bob');
  assert.deepEqual(who.permissions, ['image_generation']);
  assert.equal(who.org_id, 'org_e2e');
  assert.deepEqual(who.roles, ['member']);
});

test('bob: image_generation -> 403 insufficient_scope -> the SDK re-authorizes with images:write -> the retried call returns a PNG', async () => {
  bob.provider.decline = []; // this time bob consents to images:write
  const before = bob.log.length;
  const sessionBefore = bob.transport.sessionId;
  const { result, reauthorized } = await withReauthorization(bob, () =>
    bob.client.callTool({ name: 'image_generation', arguments: { prompt: 'a red square' } }));
  assert.ok(reauthorized, 'the call must have needed a new authorization');
  const step = bob.log.slice(before).find(e => e.status === 403);
  assert.ok(step, 'a 403 from /mcp');
  assert.match(step.wwwAuthenticate, /error="insufficient_scope"/);
  assert.match(step.wwwAuthenticate, /scope="images:write"/);
  assert.match(step.wwwAuthenticate, /resource_metadata="/);
  assert.equal(bob.provider.authorizationURLs.length, 2);
  const q = bob.provider.authorizationURLs[1].searchParams;
  assert.equal(q.get('scope'), 'images:write', 'the step-up asks for the challenged scope');
  assert.equal(q.get('code_challenge_method'), 'S256');
  assert.equal(bob.provider.registrations, 1, 'no second registration');

  const c = jwtClaims(bob.provider.tokens().access_token);
  assert.deepEqual(c.scp, ['images:write']);
  assert.equal(c.sub, 'bob');
  assert.equal(result.isError ?? false, false);
  const img = result.content.find(x => x.type === 'image');
  assert.ok(img, JSON.stringify(result).slice(0, 300));
  assert.equal(img.mimeType, 'image/png');
  assert.ok(Buffer.from(img.data, 'base64').subarray(0, 8).equals(PNG), 'PNG signature');
  assert.equal(bob.transport.sessionId, sessionBefore, 'same MCP session across the step-up (same principal)');

  // And the next call needs nothing more.
  const again = await bob.client.callTool({ name: 'image_generation', arguments: { prompt: 'a blue circle' } });
  assert.ok(again.content.some(x => x.type === 'image'));
  assert.equal(bob.provider.authorizationURLs.length, 2);
});

test('carol (role image-creator, no permissions) sees image_generation through role_permissions', async () => {
  const carol = await connectAs('carol');
  sessions.push(carol);
  const { tools } = await carol.client.listTools();
  assert.deepEqual(names(tools), ['add', 'image_generation', 'whoami']);
  const who = JSON.parse(text(await carol.client.callTool({ name: 'whoami', arguments: {} })));
  assert.deepEqual(who.roles, ['image-creator']);
  assert.deepEqual(who.permissions, []);
});

test('an unknown user cannot log in: Hydra redirects back with access_denied', async () => {
  await assert.rejects(connectAs('mallory'), /authorization failed: access_denied/);
});

test("a session is bound to its principal: bob's token on alice's session id gets 404", async () => {
  const res = await fetch(env.mcpURL, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${bob.provider.tokens().access_token}`,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      'mcp-session-id': alice.transport.sessionId,
      'mcp-protocol-version': alice.transport.protocolVersion ?? '2025-06-18',
    },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
  });
  await res.body?.cancel();
  assert.ok(alice.transport.sessionId);
  assert.equal(res.status, 404);
});

test('client credentials: a machine client (SDK ClientCredentialsProvider) with permissions from Hydra\'s token hook', async () => {
  const created = await createClient({
    client_name: 'toolgate e2e machine',
    grant_types: ['client_credentials'],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: 'images:write',
    audience: [env.mcpURL],
    metadata: { permissions: ['image_generation'] },
  });
  const log = [];
  const provider = new HydraClientCredentialsProvider({
    clientId: created.client_id,
    clientSecret: created.client_secret,
    scope: 'images:write',
    audience: env.mcpURL,
    expectedIssuer: env.hydraPublic,
  });
  const transport = new StreamableHTTPClientTransport(new URL(env.mcpURL), { authProvider: provider, fetch: loggingFetch(log) });
  const client = new Client({ name: 'toolgate-e2e-machine', version: '1.0.0' });
  sessions.push({ client });
  await client.connect(transport);
  assert.ok(log.some(e => e.url === env.mcpURL && e.status === 401), 'started from a 401');
  assert.ok(log.some(e => e.url.endsWith('/oauth2/token') && e.status === 200));
  const c = jwtClaims(provider.tokens().access_token);
  assert.equal(c.sub, created.client_id);
  assert.deepEqual(c.aud, [env.mcpURL]);
  assert.deepEqual(c.permissions, ['image_generation']);

  const { tools } = await client.listTools();
  assert.deepEqual(names(tools), ['add', 'image_generation', 'whoami']);
  const who = JSON.parse(text(await client.callTool({ name: 'whoami', arguments: {} })));
  assert.equal(who.sub, created.client_id);
  assert.equal(who.client_id, created.client_id);
  const img = await client.callTool({ name: 'image_generation', arguments: { prompt: 'a machine-made image' } });
  assert.ok(img.content.some(x => x.type === 'image' && x.mimeType === 'image/png'));
});

test('client credentials without an audience: Hydra issues a token without aud, and toolgate refuses it (401 audience_missing)', async () => {
  const created = await createClient({
    grant_types: ['client_credentials'],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: 'images:write',
  });
  const token = await clientCredentialsToken({ clientId: created.client_id, clientSecret: created.client_secret, scope: 'images:write' });
  assert.equal(jwtClaims(token).aud?.length ?? 0, 0);
  const res = await fetch(env.mcpURL, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'e2e', version: '1' } } }),
  });
  await res.body?.cancel();
  assert.equal(res.status, 401);
  assert.match(res.headers.get('www-authenticate'), /error="invalid_token"/);
  assert.match(res.headers.get('www-authenticate'), /audience_missing/);
});

test("a Hydra token with a forged signature is refused (401 invalid_token)", async () => {
  const token = alice.provider.tokens().access_token;
  const [h, p, s] = token.split('.');
  const forged = `${h}.${p}.${s.slice(0, -4)}${s.slice(-4) === 'AAAA' ? 'BBBB' : 'AAAA'}`;
  const res = await fetch(env.mcpURL, {
    method: 'POST',
    headers: { authorization: `Bearer ${forged}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: '{"jsonrpc":"2.0","id":1,"method":"ping"}',
  });
  await res.body?.cancel();
  assert.equal(res.status, 401);
  assert.match(res.headers.get('www-authenticate'), /error="invalid_token"/);
});

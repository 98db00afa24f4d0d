// A browser client: the official MCP TypeScript SDK, bundled for the browser
// (browser/client.mjs), in headless Chromium, on a page of an origin that
// toolgate's allowed_origins lists, and on the same page served from an
// origin it does not list. Proves the CORS answers of toolgate (README, "HTTP
// surface") in the browser that enforces them. Run by e2e/run.sh, which
// installs Debian's chromium when it is missing.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { build } from 'esbuild';
import { env, assertLoopback, createClient, clientCredentialsToken } from './lib.mjs';

const servers = [];
let bundle;
let token;

/** Serves the page and its bundled script on 127.0.0.1:port (0: any free port); returns the page's origin. */
async function servePage(port) {
  const server = http.createServer((req, res) => {
    const { pathname } = new URL(req.url, 'http://127.0.0.1');
    if (pathname === '/') {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      res.end('<!doctype html><title>toolgate e2e</title><pre id="result">pending</pre><script type="module" src="/client.js"></script>');
    } else if (pathname === '/client.js') {
      res.writeHead(200, { 'Content-Type': 'text/javascript; charset=utf-8' });
      res.end(bundle);
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise((resolve, reject) => server.once('error', reject).listen(port, '127.0.0.1', resolve));
  servers.push(server);
  return `http://127.0.0.1:${server.address().port}`;
}

/**
 * Loads url in headless Chromium and returns what the page wrote into
 * <pre id="result">, parsed. --virtual-time-budget makes --dump-dom wait
 * until the page has been idle (no fetch in flight, no timer due) for that
 * much virtual time, which passes at once once the page is done. Chromium
 * resolves no host name at all: everything here is on 127.0.0.1.
 */
async function runPage(url) {
  assertLoopback(url);
  const profile = await mkdtemp(path.join(os.tmpdir(), 'toolgate-e2e-chromium-'));
  try {
    const child = spawn(env.chromium, [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
      '--no-first-run', '--no-default-browser-check', '--disable-extensions', '--disable-sync',
      '--disable-background-networking', '--disable-component-update',
      '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
      `--user-data-dir=${profile}`, '--virtual-time-budget=30000', '--dump-dom', url,
    ], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', d => { stdout += d; });
    child.stderr.on('data', d => { stderr += d; });
    const killer = setTimeout(() => process.kill(-child.pid, 'SIGKILL'), 90_000);
    const code = await new Promise(resolve => child.on('close', resolve));
    clearTimeout(killer);
    const m = stdout.match(/<pre id="result">([\s\S]*?)<\/pre>/);
    assert.ok(m && m[1] !== 'pending', `chromium (exit ${code}) did not finish the page; DOM:\n${stdout.slice(0, 2000)}\nstderr:\n${stderr.slice(-2000)}`);
    return JSON.parse(m[1].replaceAll('&lt;', '<').replaceAll('&gt;', '>').replaceAll('&nbsp;', '\u00a0').replaceAll('&amp;', '&'));
  } finally {
    await rm(profile, { recursive: true, force: true });
  }
}

before(async () => {
  const out = await build({
    entryPoints: [path.join(env.e2eDir, 'browser', 'client.mjs')],
    bundle: true, format: 'esm', platform: 'browser', target: 'es2022', write: false, logLevel: 'warning',
  });
  bundle = out.outputFiles[0].contents;
  // A machine client whose token lets it see image_generation too, so that
  // the list proves the policy decided it (as in sdk.test.mjs).
  const created = await createClient({
    client_name: 'toolgate e2e browser',
    grant_types: ['client_credentials'],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: 'images:write',
    audience: [env.mcpURL],
    metadata: { permissions: ['image_generation'] },
  });
  token = await clientCredentialsToken({
    clientId: created.client_id, clientSecret: created.client_secret, scope: 'images:write', audience: env.mcpURL,
  });
});

after(() => {
  for (const s of servers) s.close();
});

const pageURL = origin => `${origin}/#${new URLSearchParams({ mcp: env.mcpURL, token })}`;

test('browser on an allowed origin: the SDK connects through CORS and lists the tools; the 401 challenge is readable', async () => {
  const origin = await servePage(Number(env.pagePort));
  const r = await runPage(pageURL(origin));
  const seen = `the page saw ${JSON.stringify(r)}`;
  assert.deepEqual(r.metadata, { status: 200, resource: env.mcpURL }, seen);
  assert.equal(r.unauthorized.status, 401, seen);
  assert.match(r.unauthorized.challenge ?? '', /^Bearer resource_metadata="[^"]+\/\.well-known\/oauth-protected-resource\/mcp"$/,
    `WWW-Authenticate must be exposed to the page; ${seen}`);
  assert.ok(r.sdk.session, `the page must read Mcp-Session-Id; ${seen}`);
  assert.deepEqual(r.sdk.tools, ['add', 'image_generation', 'whoami'], seen);
});

test('browser on another origin: the same page cannot use /mcp (the preflight is refused), but may read the public metadata', async () => {
  const origin = await servePage(0);
  const r = await runPage(pageURL(origin));
  const seen = `the page saw ${JSON.stringify(r)}`;
  assert.deepEqual(r.metadata, { status: 200, resource: env.mcpURL }, seen);
  assert.deepEqual(r.unauthorized, { error: 'TypeError: Failed to fetch' }, seen);
  assert.equal(r.sdk.tools, undefined, seen);
  assert.match(r.sdk.error ?? '', /Failed to fetch/, seen);
});

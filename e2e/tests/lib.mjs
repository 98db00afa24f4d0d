// Shared pieces of the end-to-end tests: the environment that e2e/run.sh
// sets, a request log, a scripted browser that follows Hydra's login and
// consent redirects, and OAuth client providers for the MCP TypeScript SDK.
// Every URL used here is on loopback; anything else is refused.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { ClientCredentialsProvider } from '@modelcontextprotocol/sdk/client/auth-extensions.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run the tests through e2e/run.sh (make e2e)`);
  return v;
}

export const env = {
  get mcpURL() { return need('E2E_MCP_URL'); },
  get hydraPublic() { return need('E2E_HYDRA_PUBLIC'); }, // issuer, with its trailing slash
  get hydraAdmin() { return need('E2E_HYDRA_ADMIN'); },
  get conformanceURL() { return need('E2E_CONFORMANCE_URL'); },
  get outDir() { return need('E2E_OUT'); },
  get e2eDir() { return need('E2E_DIR'); },
  // The port of the page origin that toolgate's allowed_origins lists.
  get pagePort() { return need('E2E_PAGE_PORT'); },
  get chromium() { return need('E2E_CHROMIUM'); },
  // The gateway's upstreams (tests/gateway.test.mjs).
  get everythingURL() { return need('E2E_EVERYTHING_URL'); }, // server-everything's own /mcp
  get fsShare() { return need('E2E_FS_SHARE'); }, // server-filesystem's directory
  get nodeModules() { return need('E2E_NODE_MODULES'); },
  get recCCURL() { return need('E2E_REC_CC_URL'); },
  get recCCClientID() { return need('E2E_REC_CC_CLIENT_ID'); }, // toolgate's own client at Hydra
  get recAssertURL() { return need('E2E_REC_ASSERT_URL'); },
};

/** Throws unless url is on loopback: the tests never send traffic elsewhere. */
export function assertLoopback(url) {
  const u = new URL(url);
  const h = u.hostname.replace(/^\[|\]$/g, '');
  if (!(h === 'localhost' || h === '::1' || /^127\./.test(h))) {
    throw new Error(`refusing a request to a non-loopback address: ${u.origin}`);
  }
}

/** A fetch that refuses non-loopback URLs and records every exchange. */
export function loggingFetch(log) {
  return async (input, init = {}) => {
    const url = String(input instanceof Request ? input.url : input);
    assertLoopback(url);
    const method = init.method ?? (input instanceof Request ? input.method : 'GET');
    const headers = new Headers(init.headers ?? (input instanceof Request ? input.headers : undefined));
    const res = await fetch(input, init);
    log.push({
      method,
      url,
      status: res.status,
      auth: headers.get('authorization') ? 'bearer' : 'none',
      wwwAuthenticate: res.headers.get('www-authenticate') ?? '',
      body: typeof init.body === 'string' || init.body instanceof URLSearchParams ? String(init.body) : undefined,
    });
    return res;
  };
}

/** The claims of a JWT, unverified (toolgate is the one that verifies). */
export function jwtClaims(token) {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString());
}

export function jwtHeader(token) {
  return JSON.parse(Buffer.from(token.split('.')[0], 'base64url').toString());
}

/** A minimal cookie jar for one host (cookies are not port-scoped). */
class CookieJar {
  #cookies = new Map();
  store(res) {
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const expired = attrs.some(a => /^\s*max-age\s*=\s*(0|-)/i.test(a));
      if (expired || value === '') this.#cookies.delete(name);
      else this.#cookies.set(name, value);
    }
  }
  header() {
    return [...this.#cookies].map(([n, v]) => `${n}=${v}`).join('; ');
  }
}

/**
 * Follows an authorization request as a browser would, with a cookie jar,
 * through Hydra, the login app and the consent app, until Hydra redirects to
 * redirectUrl. Returns the query of that final redirect (code, state or
 * error) and the hops taken.
 */
export async function followAuthorization(authorizationURL, redirectUrl, log) {
  const jar = new CookieJar();
  const hops = [];
  let url = String(authorizationURL);
  for (let i = 0; i < 20; i++) {
    if (url.startsWith(String(redirectUrl))) {
      return { params: new URL(url).searchParams, hops };
    }
    assertLoopback(url);
    const res = await fetch(url, { redirect: 'manual', headers: { cookie: jar.header() } });
    jar.store(res);
    log?.push({ method: 'GET', url, status: res.status, auth: 'browser', wwwAuthenticate: '' });
    hops.push(`${res.status} ${new URL(url).pathname}`);
    const location = res.headers.get('location');
    if (res.status < 300 || res.status >= 400 || !location) {
      const text = await res.text();
      throw new Error(`authorization stopped at ${url}: HTTP ${res.status}: ${text.slice(0, 300)}`);
    }
    await res.body?.cancel();
    url = new URL(location, url).href;
  }
  throw new Error(`too many redirects: ${hops.join(' -> ')}`);
}

/**
 * An OAuthClientProvider for the authorization code flow whose "browser" is
 * a script: it logs in as `user` (login_hint) and, at the consent screen,
 * unticks the scopes in `decline` (see e2e/consent/main.go). Everything the
 * SDK stores is kept in memory and recorded for the assertions.
 */
export class ScriptedUserProvider {
  constructor({ user, log, redirectUrl = 'http://127.0.0.1:9/toolgate-e2e/callback' }) {
    this.user = user;
    this.decline = [];
    this.log = log;
    this._redirectUrl = redirectUrl;
    this.authorizationURLs = [];
    this.registrations = 0;
    this.savedTokens = [];
    this.pendingCode = undefined;
    this._state = undefined;
  }
  get redirectUrl() { return this._redirectUrl; }
  get clientMetadata() {
    return {
      client_name: `toolgate e2e (${this.user})`,
      redirect_uris: [this._redirectUrl],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
      // Hydra answers "client_uri": "" and "contacts": null when a client sends
      // neither, and the SDK's schema refuses that answer (IDPS.md): send both.
      client_uri: 'http://127.0.0.1/toolgate-e2e',
      contacts: ['e2e@toolgate.invalid'],
    };
  }
  state() {
    this._state = randomBytes(16).toString('base64url');
    return this._state;
  }
  clientInformation() { return this._clientInformation; }
  saveClientInformation(info) {
    if (!this._clientInformation) this.registrations++;
    this._clientInformation = info;
  }
  tokens() { return this._tokens; }
  saveTokens(tokens) {
    this._tokens = tokens;
    this.savedTokens.push(tokens);
  }
  saveCodeVerifier(v) { this._verifier = v; }
  codeVerifier() { return this._verifier; }
  invalidateCredentials(scope) {
    if (scope === 'all' || scope === 'client') this._clientInformation = undefined;
    if (scope === 'all' || scope === 'tokens') this._tokens = undefined;
  }
  async redirectToAuthorization(authorizationURL) {
    this.authorizationURLs.push(new URL(authorizationURL));
    const u = new URL(authorizationURL);
    u.searchParams.set('login_hint', this.user);
    if (this.decline.length) u.searchParams.set('e2e_decline', this.decline.join(' '));
    const { params } = await followAuthorization(u, this._redirectUrl, this.log);
    if (params.get('error')) {
      throw new Error(`authorization failed: ${params.get('error')}: ${params.get('error_description')}`);
    }
    assert.equal(params.get('state'), this._state, 'state must round-trip');
    this.pendingCode = params.get('code');
    assert.ok(this.pendingCode, 'an authorization code');
  }
  takeCode() {
    const c = this.pendingCode;
    this.pendingCode = undefined;
    return c;
  }
}

/**
 * Connects an SDK client as `user`, doing what an interactive client does:
 * the first connect fails with UnauthorizedError after the SDK sent the user
 * to the authorization URL; the "browser" brings back a code; finishAuth
 * exchanges it; a second transport connects with the token.
 */
export async function connectAs(user, { decline = [] } = {}) {
  const log = [];
  const provider = new ScriptedUserProvider({ user, log });
  provider.decline = decline;
  const fetchFn = loggingFetch(log);
  const url = new URL(env.mcpURL);
  let transport = new StreamableHTTPClientTransport(url, { authProvider: provider, fetch: fetchFn });
  let client = new Client({ name: `toolgate-e2e-${user}`, version: '1.0.0' });
  let redirected = false;
  try {
    await client.connect(transport);
  } catch (err) {
    if (!(err instanceof UnauthorizedError)) throw err;
    redirected = true;
    await transport.finishAuth(provider.takeCode());
    await transport.close().catch(() => {});
    transport = new StreamableHTTPClientTransport(url, { authProvider: provider, fetch: fetchFn });
    client = new Client({ name: `toolgate-e2e-${user}`, version: '1.0.0' });
    await client.connect(transport);
  }
  return { client, transport, provider, log, redirected };
}

/**
 * The SDK's ClientCredentialsProvider plus Hydra's `audience` parameter:
 * Hydra ignores RFC 8707 `resource` (which the SDK sends too) and issues a
 * token without `aud` unless the request names an allowed audience.
 */
export class HydraClientCredentialsProvider extends ClientCredentialsProvider {
  constructor(options) {
    super(options);
    this.audience = options.audience;
    this.savedTokens = [];
  }
  saveTokens(tokens) {
    super.saveTokens(tokens);
    this.savedTokens.push(tokens);
  }
  prepareTokenRequest(scope) {
    const params = super.prepareTokenRequest(scope);
    if (this.audience) params.set('audience', this.audience);
    return params;
  }
}

/** Hydra's admin API: create an OAuth client (an operator's step). */
export async function createClient(body) {
  const url = new URL('admin/clients', env.hydraAdmin.replace(/\/?$/, '/'));
  assertLoopback(url);
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const json = await res.json();
  if (res.status !== 201) throw new Error(`creating a client: HTTP ${res.status}: ${JSON.stringify(json)}`);
  return json;
}

/** A client-credentials token straight from Hydra's token endpoint. */
export async function clientCredentialsToken({ clientId, clientSecret, scope, audience }) {
  const url = new URL('oauth2/token', env.hydraPublic);
  assertLoopback(url);
  const body = new URLSearchParams({ grant_type: 'client_credentials' });
  if (scope) body.set('scope', scope);
  if (audience) body.set('audience', audience);
  const res = await fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: 'Basic ' + Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(clientSecret)}`).toString('base64'),
    },
    body,
  });
  const json = await res.json();
  if (!res.ok) throw new Error(`token: HTTP ${res.status}: ${JSON.stringify(json)}`);
  return json.access_token;
}

/** Text of the first content item of a tool result. */
export function text(result) {
  return result.content?.find(c => c.type === 'text')?.text;
}

const inspectorCLI = createRequire(import.meta.url).resolve('@modelcontextprotocol/inspector/clients/launcher/build/index.js');

/**
 * Runs MCP Inspector's command line (`mcp-inspector --cli`) against url
 * (toolgate's /mcp unless given) and returns its exit status and parsed JSON
 * output.
 */
export function inspector(args, { token, url = env.mcpURL } = {}) {
  const argv = [inspectorCLI, '--cli', url, '--transport', 'http', '--format', 'json',
    // Never start an interactive OAuth login (a browser): fail with auth_required instead.
    '--stored-auth-only', ...args];
  if (token) argv.push('--header', `Authorization: Bearer ${token}`);
  // The Inspector keeps a catalog and OAuth state under $HOME/.mcp-inspector: give it its own.
  const home = join(env.outDir, 'inspector-home');
  mkdirSync(home, { recursive: true });
  const r = spawnSync(process.execPath, argv, {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, HOME: home, MCP_CATALOG_PATH: join(home, 'mcp.json'), MCP_CLIENT_CONFIG_PATH: join(home, 'client.json'), NO_COLOR: '1', BROWSER: 'false' },
  });
  const parse = s => {
    try { return JSON.parse(s); } catch { return undefined; }
  };
  return { status: r.status, out: parse(r.stdout), err: parse(r.stderr), stdout: r.stdout, stderr: r.stderr, error: r.error };
}

// The page script of tests/browser.test.mjs, bundled for the browser with
// esbuild: the official MCP TypeScript SDK as a browser client of toolgate.
// The URL fragment carries the MCP endpoint and the bearer token (a fragment
// is never sent to a server). The page writes what it saw, as JSON, into
// <pre id="result">, which the test reads from Chromium's DOM dump.

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const params = new URLSearchParams(location.hash.slice(1));
const mcp = new URL(params.get('mcp'));
const result = {};

// What a failed fetch says: the browser hides why (a CORS refusal is a
// TypeError "Failed to fetch"), which is the point.
const failure = err => `${err?.name}: ${err?.message}`;

// The protected-resource metadata, with the header the SDK's discovery sends.
try {
  const res = await fetch(new URL('/.well-known/oauth-protected-resource/mcp', mcp), {
    headers: { 'MCP-Protocol-Version': '2025-06-18' },
  });
  result.metadata = { status: res.status, resource: (await res.json()).resource };
} catch (err) {
  result.metadata = { error: failure(err) };
}

// A request without a token: the challenge must be readable, for a client
// to find the authorization server.
try {
  const res = await fetch(mcp, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }),
  });
  result.unauthorized = { status: res.status, challenge: res.headers.get('WWW-Authenticate') };
} catch (err) {
  result.unauthorized = { error: failure(err) };
}

// The SDK with the token: initialize (the session id must be readable for
// the next request to carry it), then tools/list.
const transport = new StreamableHTTPClientTransport(mcp, {
  requestInit: { headers: { Authorization: `Bearer ${params.get('token')}` } },
});
const client = new Client({ name: 'toolgate-e2e-browser', version: '1.0.0' });
try {
  await client.connect(transport);
  const session = transport.sessionId;
  const { tools } = await client.listTools();
  result.sdk = { session, tools: tools.map(t => t.name).sort() };
} catch (err) {
  result.sdk = { error: failure(err) };
}
// Closing ends the SDK's GET stream: with nothing left loading, Chromium's
// virtual time runs out and it dumps the DOM.
await client.close().catch(() => {});

document.getElementById('result').textContent = JSON.stringify(result);

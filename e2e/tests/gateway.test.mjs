// Issue 15's gateway against MCP servers nobody here wrote: toolgate (the
// Hydra-backed one of e2e/run.sh) fronts MCP's server-everything over stdio
// (ev-stdio) and over Streamable HTTP (ev-http), server-filesystem over
// stdio (fs), and two recording upstreams of the project's own
// (e2e/recorder): rec-cc, reached with Hydra's client-credentials token,
// and rec-assert, reached with toolgate's assertion about the user. The
// policy (e2e/gateway-policy.json) gives the reader dana the read-only tools
// of the three npm upstreams and the editor erin all of them. The same
// servers reached directly, by the same SDK and the same Inspector, are the
// reference every answer through toolgate is compared with.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { ResourceUpdatedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { env, connectAs, inspector, text } from './lib.mjs';

const byName = (a, b) => a.name.localeCompare(b.name);
const sha256 = s => createHash('sha256').update(s).digest('hex');
const show = r => `exit ${r.status}\nstdout: ${r.stdout?.slice(0, 600)}\nstderr: ${r.stderr?.slice(0, 600)}`;
/** The rejection of p (a JSON-RPC error), failing when p resolves. */
const rejection = p => p.then(r => assert.fail(`expected an error, got ${JSON.stringify(r).slice(0, 300)}`), e => e);

/** Every tool of a listing, across pages. */
async function listAll(client) {
  const tools = [];
  let cursor;
  do {
    const page = await client.listTools(cursor ? { cursor } : {});
    tools.push(...page.tools);
    cursor = page.nextCursor;
  } while (cursor);
  return tools;
}

/**
 * What of a tool result must come back unchanged through toolgate. The text
 * resources of server-everything carry the time of day they were made
 * (toLocaleTimeString): that is the one part two calls may differ in.
 */
const comparable = r => JSON.parse(JSON.stringify({
  content: r.content, structuredContent: r.structuredContent, isError: r.isError ?? false,
}).replace(/\d{1,2}:\d{2}:\d{2}(\s?[AP]M)?/g, 'TIME'));

/** The recorder's log: one object per HTTP request it got. */
const records = name => readFileSync(join(env.outDir, `${name}.jsonl`), 'utf8').trim().split('\n').map(l => JSON.parse(l));

const pkg = name => join(env.nodeModules, '@modelcontextprotocol', name, 'dist/index.js');
const known = () => join(env.fsShare, 'known.txt');

let dana; // role reader
let erin; // role editor
const direct = {}; // upstream name -> an SDK client connected to the server itself
const listed = {}; // user -> the tools toolgate lists to them

test.before(async () => {
  const connect = async transport => {
    const c = new Client({ name: 'toolgate-e2e-direct', version: '1.0.0' });
    await c.connect(transport);
    return c;
  };
  [dana, erin, direct['ev-stdio'], direct['ev-http'], direct.fs] = await Promise.all([
    connectAs('dana'),
    connectAs('erin'),
    connect(new StdioClientTransport({ command: process.execPath, args: [pkg('server-everything'), 'stdio'], stderr: 'ignore' })),
    connect(new StreamableHTTPClientTransport(new URL(env.everythingURL))),
    connect(new StdioClientTransport({ command: process.execPath, args: [pkg('server-filesystem'), env.fsShare], stderr: 'ignore' })),
  ]);
  listed.dana = await listAll(dana.client);
  listed.erin = await listAll(erin.client);
});

test.after(async () => {
  for (const c of [dana?.client, erin?.client, ...Object.values(direct)]) await c?.close().catch(() => {});
});

test('dana (reader) sees the read-only tools of each npm upstream, erin (editor) all, prefixed and otherwise unchanged', async () => {
  for (const [up, client] of Object.entries(direct)) {
    const own = (await listAll(client)).map(t => ({ ...t, name: `${up}_${t.name}` })).sort(byName);
    const readOnly = own.filter(t => t.annotations?.readOnlyHint === true);
    assert.ok(readOnly.length > 0 && readOnly.length < own.length, `${up}: the annotation rule must split the tools`);
    const of = tools => tools.filter(t => t.name.startsWith(`${up}_`)).sort(byName);
    // Whole tool objects: description, title, schemas and annotations as the upstream lists them.
    assert.deepEqual(of(listed.erin), own, `${up}: erin's tools`);
    assert.deepEqual(of(listed.dana), readOnly, `${up}: dana's tools`);
  }
  const dn = listed.dana.map(t => t.name);
  const en = listed.erin.map(t => t.name);
  assert.ok(dn.includes('fs_read_text_file') && !dn.includes('fs_write_file'), dn.join(' '));
  assert.ok(en.includes('fs_write_file') && en.includes('ev-http_toggle-simulated-logging'), en.join(' '));
  // The policy grants the built-ins as before; image_generation needs a permission neither has.
  for (const names of [dn, en]) {
    assert.ok(names.includes('add') && names.includes('whoami') && !names.includes('image_generation'));
  }
});

// Results with every kind of content: text, image, annotations, resource_link,
// an embedded resource, structuredContent.
const everythingCalls = [
  ['echo', { message: 'through toolgate' }],
  ['get-sum', { a: 2, b: 40 }],
  ['get-structured-content', { location: 'Chicago' }],
  ['get-tiny-image', {}],
  ['get-annotated-message', { messageType: 'error', includeImage: true }],
  ['get-resource-links', { count: 3 }],
  ['get-resource-reference', { resourceType: 'Text', resourceId: 2 }],
];

for (const up of ['ev-stdio', 'ev-http']) {
  test(`${up}: each call through toolgate returns what server-everything returns directly`, async () => {
    const types = new Set();
    for (const [name, args] of everythingCalls) {
      const via = await dana.client.callTool({ name: `${up}_${name}`, arguments: args });
      const own = await direct[up].callTool({ name, arguments: args });
      assert.deepEqual(comparable(via), comparable(own), `${up}_${name}`);
      for (const c of via.content) types.add(c.type);
      if (via.structuredContent) types.add('structuredContent');
    }
    assert.deepEqual([...types].sort(), ['image', 'resource', 'resource_link', 'structuredContent', 'text']);
    const sum = await erin.client.callTool({ name: `${up}_get-sum`, arguments: { a: 1, b: 2 } });
    assert.equal(text(sum), 'The sum of 1 and 2 is 3.');
  });
}

test('a hidden upstream tool answers as an unknown one: "not found", nothing reaches the upstream', async () => {
  for (const [hidden, args] of [
    ['ev-http_toggle-simulated-logging', {}],
    ['ev-stdio_toggle-simulated-logging', {}],
    ['fs_write_file', { path: join(env.fsShare, 'dana.txt'), content: 'dana was here' }],
  ]) {
    assert.ok(listed.erin.some(t => t.name === hidden), `${hidden} exists`);
    const e = await rejection(dana.client.callTool({ name: hidden, arguments: args }));
    const none = await rejection(dana.client.callTool({ name: `${hidden}-nope`, arguments: args }));
    assert.equal(e.code, -32602, e.message);
    assert.match(e.message, new RegExp(`tool '${hidden}' not found`));
    assert.equal(e.message.replace(hidden, 'X'), none.message.replace(`${hidden}-nope`, 'X'));
  }
  assert.ok(!existsSync(join(env.fsShare, 'dana.txt')), 'the hidden write did not happen');
  // The operator's decision log says which upstream the refused tool is of
  // (lines are flushed within decision_log.flush_interval, 100 ms).
  await new Promise(r => setTimeout(r, 500));
  const decisions = readFileSync(join(env.outDir, 'toolgate-decisions.log'), 'utf8').trim().split('\n').map(l => JSON.parse(l));
  const d = decisions.findLast(x => x.action === 'tools/call' && x.tool === 'fs_write_file' && x.principal.sub === 'dana');
  assert.equal(d?.server, 'fs', JSON.stringify(d));
  assert.equal(d.result, 'deny');
  assert.equal(d.reason_code, 'not_visible');
});

test('fs: server-filesystem reads the known file for dana, and writes only for erin', async () => {
  const want = readFileSync(known(), 'utf8');
  const via = await dana.client.callTool({ name: 'fs_read_text_file', arguments: { path: known() } });
  assert.equal(text(via), want);
  const own = await direct.fs.callTool({ name: 'read_text_file', arguments: { path: known() } });
  assert.deepEqual(comparable(via), comparable(own));

  const path = join(env.fsShare, 'erin.txt');
  const w = await erin.client.callTool({ name: 'fs_write_file', arguments: { path, content: 'written through toolgate' } });
  assert.ok(!w.isError, JSON.stringify(w));
  assert.equal(readFileSync(path, 'utf8'), 'written through toolgate');
  // Outside its directory server-filesystem refuses, and toolgate passes the refusal on.
  const out = await erin.client.callTool({ name: 'fs_read_text_file', arguments: { path: '/etc/hostname' } });
  assert.equal(out.isError, true, JSON.stringify(out));
});

test('a stdio upstream gets only PATH and HOME from toolgate, none of its secrets', async () => {
  const r = await erin.client.callTool({ name: 'ev-stdio_get-env', arguments: {} });
  const childEnv = JSON.parse(text(r));
  assert.deepEqual(Object.keys(childEnv).filter(k => k !== 'PATH' && k !== 'HOME'), []);
  assert.ok(!JSON.stringify(childEnv).includes('REC_CC_SECRET'));
});

test('inspector --cli through toolgate lists erin\'s tools and gets what it gets from server-everything directly', async () => {
  const token = erin.provider.tokens().access_token;
  const l = inspector(['--method', 'tools/list'], { token });
  assert.equal(l.status, 0, show(l));
  // rec-assert's tools may come up between two listings (see the rec-assert test).
  const names = tools => tools.map(t => t.name).filter(n => !n.startsWith('rec-assert_')).sort();
  assert.deepEqual(names(l.out.result.tools), names(await listAll(erin.client)));

  const args = ['--tool-args-json', '{"location":"Los Angeles"}'];
  const via = inspector(['--method', 'tools/call', '--tool-name', 'ev-http_get-structured-content', ...args], { token });
  const own = inspector(['--method', 'tools/call', '--tool-name', 'get-structured-content', ...args], { url: env.everythingURL });
  assert.equal(via.status, 0, show(via));
  assert.equal(own.status, 0, show(own));
  assert.deepEqual(comparable(via.out.result), comparable(own.out.result));
  assert.equal(via.out.result.structuredContent.conditions, 'Sunny / Clear');

  const read = inspector(['--method', 'tools/call', '--tool-name', 'fs_read_text_file', '--tool-args-json', JSON.stringify({ path: known() })], { token });
  assert.equal(read.status, 0, show(read));
  assert.equal(text(read.out.result), readFileSync(known(), 'utf8'));
});

/** The client side of dana's and erin's connections: what must never reach an upstream. */
function clientSecrets() {
  return [dana, erin].flatMap(s => [s.provider.tokens().access_token, s.transport.sessionId]).filter(Boolean);
}

/** Asserts that no request the recorder got carried a client's token or session id. */
function assertNoClientCredentials(recs) {
  const secrets = clientSecrets();
  const hashes = new Set(secrets.map(sha256));
  for (const r of recs) {
    assert.ok(!hashes.has(r.token_sha256), `a client's token reached the upstream: ${r.method}`);
    const headers = JSON.stringify(r.header);
    for (const s of secrets) assert.ok(!headers.includes(s), `a client's token or session id in the upstream's headers: ${headers}`);
  }
}

test('rec-cc: toolgate reaches it with Hydra\'s client-credentials token, one for every user, never the client\'s', async () => {
  for (const s of [dana, erin]) {
    const r = await s.client.callTool({ name: 'rec-cc_whoami_upstream', arguments: {} });
    const claims = r.structuredContent;
    assert.equal(claims.iss, env.hydraPublic);
    assert.equal(claims.sub, env.recCCClientID, 'toolgate\'s own client, not the user');
    assert.equal(claims.client_id, env.recCCClientID);
    assert.ok([].concat(claims.aud).includes(env.recCCURL), `aud ${claims.aud}`);
  }
  const recs = records('recorder-cc');
  assert.ok(recs.filter(r => r.method === 'tools/call').length >= 2);
  for (const r of recs) {
    assert.equal(r.error, undefined, `every request verified against Hydra's JWKS: ${r.method} ${r.error}`);
    assert.equal(r.claims.sub, env.recCCClientID);
  }
  assert.equal(new Set(recs.map(r => r.token_sha256)).size, 1, 'one token, reused until it expires');
  assertNoClientCredentials(recs);
});

test('rec-assert: toolgate\'s assertion, verified with its /.well-known/jwks.json, names the calling user', async () => {
  // toolgate serves its JWKS only once its first listing of the upstreams is
  // over, so rec-assert refuses that listing (it cannot fetch the key yet);
  // toolgate lists again every 30 s (see e2e/README.md).
  const deadline = Date.now() + 45_000;
  while (!(await listAll(dana.client)).some(t => t.name === 'rec-assert_whoami_upstream')) {
    assert.ok(Date.now() < deadline, 'rec-assert\'s tools never appeared');
    await new Promise(r => setTimeout(r, 1000));
  }
  const toolgate = new URL(env.mcpURL).origin;
  const sessions = {};
  for (const [user, s] of [['dana', dana], ['erin', erin]]) {
    const r = await s.client.callTool({ name: 'rec-assert_whoami_upstream', arguments: {} });
    const claims = r.structuredContent;
    assert.equal(claims.iss, toolgate);
    assert.equal(claims.sub, user);
    assert.equal(claims.aud, env.recAssertURL);
    assert.equal(claims.client_id, s.provider.clientInformation().client_id);
    assert.ok(claims.exp - claims.iat <= 300, `lifetime ${claims.exp - claims.iat}s`);
    sessions[user] = text(await s.client.callTool({ name: 'rec-assert_session', arguments: {} }));
    assert.ok(sessions[user], `${user} has an upstream session`);
  }
  assert.ok(dana.transport.sessionId && erin.transport.sessionId, 'the clients have toolgate sessions');
  assert.notEqual(sessions.dana, sessions.erin, 'per_principal: two users, two upstream sessions');

  const recs = records('recorder-assert');
  for (const [user, sid] of Object.entries(sessions)) {
    const own = recs.filter(r => r.header['Mcp-Session-Id']?.[0] === sid);
    assert.ok(own.some(r => r.method === 'tools/call'), `${user}'s calls reached the upstream in their session`);
    for (const r of own) {
      assert.equal(r.error, undefined, `${r.method}: ${r.error}`);
      assert.equal(r.claims.sub, user, `every request of ${user}'s upstream session names ${user}`);
    }
  }
  assertNoClientCredentials(recs);
});

// Issue 16: prompts and resources of server-everything behind the policy
// (e2e/gateway-policy.json: prompt_rules and resource_rules). Resource URIs
// are served unchanged, so ev-http's (the same as ev-stdio's) are dropped as
// collisions: ev-stdio, first in the configuration, serves them.
const noTime = v => JSON.parse(JSON.stringify(v).replace(/\d{1,2}:\d{2}:\d{2}(\s?[AP]M)?/g, 'TIME'));
/** The message of a rejection with the name in it replaced. */
const messageOf = async (p, name) => (await rejection(p)).message.replaceAll(name, 'NAME');
/** A completion as it means: mcp-go re-encodes completions and leaves out hasMore when false. */
const completion = async p => { const r = await p; return { completion: { hasMore: false, ...r.completion } }; };

test('prompts: each user sees and gets exactly the prompts the policy grants; hidden ones answer as missing', async () => {
  const names = async c => (await c.listPrompts()).prompts.map(p => p.name).sort();
  assert.deepEqual(await names(dana.client), ['ev-http_simple-prompt', 'ev-stdio_simple-prompt']);
  assert.deepEqual(await names(erin.client), ['ev-http_simple-prompt', 'ev-stdio_completable-prompt', 'ev-stdio_simple-prompt']);
  const own = (await direct['ev-stdio'].listPrompts()).prompts.find(p => p.name === 'completable-prompt');
  const via = (await erin.client.listPrompts()).prompts.find(p => p.name === 'ev-stdio_completable-prompt');
  assert.deepEqual(via, { ...own, name: 'ev-stdio_completable-prompt' });

  for (const up of ['ev-stdio', 'ev-http']) {
    assert.deepEqual(await dana.client.getPrompt({ name: `${up}_simple-prompt` }), await direct[up].getPrompt({ name: 'simple-prompt' }));
  }
  const args = { department: 'Sales', name: 'Eve' };
  assert.deepEqual(await erin.client.getPrompt({ name: 'ev-stdio_completable-prompt', arguments: args }),
    await direct['ev-stdio'].getPrompt({ name: 'completable-prompt', arguments: args }));
  assert.equal(await messageOf(dana.client.getPrompt({ name: 'ev-stdio_completable-prompt', arguments: args }), 'ev-stdio_completable-prompt'),
    await messageOf(dana.client.getPrompt({ name: 'ev-stdio_no-such-prompt', arguments: args }), 'ev-stdio_no-such-prompt'));

  // Completions of a prompt's arguments: erin's are the server's; dana's answer as for a missing prompt.
  const complete = (c, name) => c.complete({ ref: { type: 'ref/prompt', name }, argument: { name: 'name', value: '' },
    context: { arguments: { department: 'Engineering' } } });
  assert.deepEqual(await completion(complete(erin.client, 'ev-stdio_completable-prompt')), await completion(complete(direct['ev-stdio'], 'completable-prompt')));
  assert.equal(await messageOf(complete(dana.client, 'ev-stdio_completable-prompt'), 'ev-stdio_completable-prompt'),
    await messageOf(complete(dana.client, 'ev-stdio_no-such-prompt'), 'ev-stdio_no-such-prompt'));
});

test('resources: URIs unchanged, each user sees and reads exactly what the policy grants, the bytes of a direct read', async () => {
  const own = (await direct['ev-stdio'].listResources()).resources;
  const docs = own.filter(r => r.uri.startsWith('demo://resource/static/')).sort((a, b) => a.uri.localeCompare(b.uri));
  assert.ok(docs.length > 0, 'server-everything lists its documents');
  const sortedResources = async c => (await c.listResources()).resources.sort((a, b) => a.uri.localeCompare(b.uri));
  assert.deepEqual(await sortedResources(dana.client), docs);
  for (const doc of docs) {
    assert.deepEqual(await dana.client.readResource({ uri: doc.uri }), await direct['ev-stdio'].readResource({ uri: doc.uri }), doc.uri);
  }

  const text = 'demo://resource/dynamic/text/{resourceId}';
  const template = (await direct['ev-stdio'].listResourceTemplates()).resourceTemplates.find(t => t.uriTemplate === text);
  assert.deepEqual((await dana.client.listResourceTemplates()).resourceTemplates, []);
  assert.deepEqual((await erin.client.listResourceTemplates()).resourceTemplates, [template]);
  const uri = 'demo://resource/dynamic/text/3';
  assert.deepEqual(noTime(await erin.client.readResource({ uri })), noTime(await direct['ev-stdio'].readResource({ uri })));
  // Hidden from dana: the answer of a URI nobody serves.
  assert.equal(await messageOf(dana.client.readResource({ uri }), uri),
    await messageOf(dana.client.readResource({ uri: 'demo://nothing/here' }), 'demo://nothing/here'));
  const completeId = (c, ref) => c.complete({ ref: { type: 'ref/resource', uri: ref }, argument: { name: 'resourceId', value: '4' } });
  assert.deepEqual(await completion(completeId(erin.client, text)), await completion(completeId(direct['ev-stdio'], text)));
  assert.equal(await messageOf(completeId(dana.client, text), text),
    await messageOf(completeId(dana.client, 'demo://nothing/{id}'), 'demo://nothing/{id}'));
});

// Subscriptions (MCP server/resources, "Subscriptions"): decided like a
// read, forwarded on the user's own ev-stdio process, whose
// toggle-subscriber-updates tool has it send notifications/resources/updated
// for the session's subscriptions at once and every 5 s.
test('subscriptions: erin hears the updates of a resource she may read; dana\'s subscribe to it answers as for a missing one', async () => {
  assert.equal(erin.client.getServerCapabilities()?.resources?.subscribe, true);
  const uri = 'demo://resource/dynamic/text/3';
  assert.equal(await messageOf(dana.client.subscribeResource({ uri }), uri),
    await messageOf(dana.client.subscribeResource({ uri: 'demo://nothing/here' }), 'demo://nothing/here'));

  const updated = new Promise(resolve => erin.client.setNotificationHandler(ResourceUpdatedNotificationSchema, n => {
    if (n.params.uri === uri) resolve(n.params);
  }));
  await erin.client.subscribeResource({ uri });
  const toggle = async () => text(await erin.client.callTool({ name: 'ev-stdio_toggle-subscriber-updates', arguments: {} }));
  assert.match(await toggle(), /^Started/);
  try {
    assert.deepEqual(await updated, { uri });
  } finally {
    assert.match(await toggle(), /^Stopped/);
    await erin.client.unsubscribeResource({ uri });
  }
});

// toolgate's body limit as Node meets it: a body over limits.max_body_bytes
// (1 MiB by default) gets a 413 that the client reads, not a connection
// reset, whether the body has a Content-Length (refused before it is read)
// or is chunked (refused once it crosses the limit), and whether the client
// reads while it sends (fetch) or only once it has sent the whole body.
// Run by e2e/run.sh.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { env, assertLoopback } from './lib.mjs';

// The anonymous toolgate: the limit is checked after authentication, to
// which a token would add nothing here.
const url = env.conformanceURL;
assertLoopback(url);

const body = new TextEncoder().encode(JSON.stringify({
  jsonrpc: '2.0', id: 1, method: 'tools/call',
  params: { name: 'add', arguments: { a: 1, b: 2, pad: 'x'.repeat(2 << 20) } },
}));

async function post(init) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-06-18' },
    ...init,
  });
  return { status: res.status, connection: res.headers.get('connection'), error: (await res.json()).error };
}

const refused = { status: 413, connection: 'close', error: 'request_too_large' };

test('a 2 MiB body with a Content-Length gets a 413 fetch reads', async () => {
  assert.deepEqual(await post({ body }), refused);
});

test('a 2 MiB chunked body gets a 413 fetch reads', async () => {
  const chunk = 64 << 10;
  const stream = new ReadableStream({
    start(c) {
      for (let i = 0; i < body.length; i += chunk) c.enqueue(body.subarray(i, i + chunk));
      c.close();
    },
  });
  assert.deepEqual(await post({ body: stream, duplex: 'half' }), refused);
});

// A client on a slow link that reads the answer only once its body is sent:
// 2 MiB in 64 KiB pieces over about a second and a half. Closing with the
// body unread (as toolgate did, half a second after its 413) resets the
// connection under the client's writes; toolgate now drains the body first.
test('a client sending 2 MiB slowly, reading only then, gets the 413', async () => {
  const { hostname, port, pathname } = new URL(url);
  const socket = net.connect(Number(port), hostname);
  let received = '';
  socket.on('data', d => { received += d; });
  const failed = new Promise((_, reject) => socket.on('error', reject));
  failed.catch(() => {}); // raced below
  await Promise.race([once(socket, 'connect'), failed]);
  socket.pause(); // nothing is read until the whole body is written
  const write = data => Promise.race([new Promise(resolve => socket.write(data, resolve)), failed]);
  try {
    await write(`POST ${pathname} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nContent-Type: application/json\r\n` +
      `Accept: application/json, text/event-stream\r\nContent-Length: ${body.length}\r\n\r\n`);
    const chunk = 64 << 10;
    for (let i = 0; i < body.length; i += chunk) {
      await write(body.subarray(i, i + chunk));
      await sleep(45);
    }
    socket.resume();
    await Promise.race([once(socket, 'end'), failed]);
  } finally {
    socket.destroy();
  }
  const [head, answer] = received.split('\r\n\r\n');
  assert.match(head, /^HTTP\/1\.1 413 /);
  assert.match(head, /^connection: close$/im);
  assert.equal(JSON.parse(answer).error, 'request_too_large');
});

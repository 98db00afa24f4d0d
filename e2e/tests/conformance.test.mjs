// The MCP conformance suite (@modelcontextprotocol/conformance) against
// toolgate with `anonymous: true` and a policy that shows the anonymous
// principal every tool. One run of the suite's active server scenarios with
// e2e/conformance-expected-failures.yml as its baseline; then one test per
// scenario: a scenario must pass unless the baseline lists it (then it is a
// "todo" with the baseline's reason), and a listed scenario that passes fails
// the run (stale baseline), as the suite itself does.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { env, assertLoopback } from './lib.mjs';

// The scenarios that apply to a tool gate: never allowed in the baseline.
const MUST_PASS = ['server-initialize', 'ping', 'tools-list', 'dns-rebinding-protection'];

/** The baseline: `  - scenario  # reason` lines under `server:`. */
function readBaseline(path) {
  const reasons = new Map();
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const m = line.match(/^\s+-\s+([\w.-]+)\s*(?:#\s*(.*))?$/);
    if (m) reasons.set(m[1], m[2] ?? '');
  }
  return reasons;
}

const baselinePath = join(env.e2eDir, 'conformance-expected-failures.yml');
const baseline = readBaseline(baselinePath);
const outDir = join(env.outDir, 'conformance');
rmSync(outDir, { recursive: true, force: true });
mkdirSync(outDir, { recursive: true });
assertLoopback(env.conformanceURL);

const cli = createRequire(import.meta.url).resolve('@modelcontextprotocol/conformance/dist/index.js');
const started = Date.now();
const run = spawnSync(process.execPath, [cli, 'server', '--url', env.conformanceURL, '--suite', 'active',
  '--expected-failures', baselinePath, '-o', outDir], { encoding: 'utf8', timeout: 300_000, env: { ...process.env, NO_COLOR: '1' } });
const seconds = ((Date.now() - started) / 1000).toFixed(1);

// Results: <outDir>/server-<scenario>-<timestamp>/checks.json
const results = new Map();
for (const dir of existsSync(outDir) ? readdirSync(outDir) : []) {
  const m = dir.match(/^server-(.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$/);
  if (!m) continue;
  const checks = JSON.parse(readFileSync(join(outDir, dir, 'checks.json'), 'utf8'));
  results.set(m[1], checks);
}

test(`the conformance suite ran (${results.size} scenarios in ${seconds}s) and its baseline check passed`, () => {
  assert.equal(run.error, undefined, String(run.error));
  assert.ok(results.size >= MUST_PASS.length, `no results in ${outDir}:\n${run.stdout}\n${run.stderr}`);
  assert.equal(run.status, 0, `conformance exited ${run.status}:\n${run.stdout.split('=== SUMMARY ===')[1] ?? run.stdout}\n${run.stderr}`);
});

test('the baseline lists none of the scenarios a tool gate must pass', () => {
  for (const s of MUST_PASS) assert.ok(!baseline.has(s), `${s} is in ${baselinePath}`);
});

for (const s of MUST_PASS) {
  if (!results.has(s)) test(`scenario ${s} ran`, () => assert.fail(`no result for ${s}`));
}

for (const [scenario, checks] of [...results].sort(([a], [b]) => a.localeCompare(b))) {
  const bad = checks.filter(c => c.status === 'FAILURE' || c.status === 'WARNING');
  const detail = bad.map(c => `${c.status} ${c.name}: ${c.errorMessage ?? c.description ?? ''}`).join('\n');
  if (baseline.has(scenario)) {
    if (bad.length > 0) {
      // Reported as TODO, with what failed as a diagnostic.
      test(`scenario ${scenario}`, { todo: `expected failure: ${baseline.get(scenario)}` }, t => t.diagnostic(detail));
    } else {
      test(`scenario ${scenario}`, () => assert.fail('passes now: remove it from conformance-expected-failures.yml'));
    }
  } else {
    test(`scenario ${scenario} (${checks.filter(c => c.status === 'SUCCESS').length} checks)`, () => {
      assert.equal(bad.length, 0, detail);
    });
  }
}

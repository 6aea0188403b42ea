// Starts build/ferry serve for the conformance tests: models "tiny" and "long"
// (tiny with a 32k context) from `ferry model init` (seeded random weights,
// built-in tokenizer) on a free
// port (port 0; the port is read from the "listening" log line). Exits 77
// (skipped) when the binary or the pinned openai package is missing.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const BIN = process.env.FERRY_BIN || join(here, '..', '..', 'build', 'ferry');

export function skip(reason) {
  console.log('SKIP: ' + reason);
  process.exit(77);
}

export async function loadOpenAI() {
  if (!existsSync(join(here, 'node_modules', 'openai')))
    skip('the openai package is not installed: run tools/deps.sh (npm ci in tests/conformance)');
  return (await import('openai')).default;
}

export async function startServer(extraArgs = []) {
  if (!existsSync(BIN)) skip('no ferry binary at ' + BIN + ' (set FERRY_BIN)');
  const dir = mkdtempSync(join(tmpdir(), 'ferry-conf-'));
  const model = join(dir, 'tiny.gguf');
  const long = join(dir, 'long.gguf'); // tiny with a 32k context: requests slow enough to abort
  for (const [shape, path] of [['tiny', model], ['tiny-32k', long]]) {
    const mk = spawnSync(BIN, ['model', 'init', '--arch', 'llama', '--shape', shape, '--type',
      'q8_0', '--seed', '7', '-o', path], { stdio: ['ignore', 'ignore', 'pipe'] });
    if (mk.status !== 0) throw new Error('model init failed: ' + mk.stderr);
  }
  const log = join(dir, 'ferry.log');
  const proc = spawn(BIN, ['serve', '--listen', '127.0.0.1:0', '--data', join(dir, 'data'),
    '--log-file', log, '--shutdown-grace-s', '2', '--model', 'tiny=' + model, '--model', 'long=' + long, ...extraArgs],
  { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  let exited = null;
  proc.on('exit', (code) => { exited = code; });
  const deadline = Date.now() + 20000;
  let port = null;
  while (port === null) {
    if (exited !== null) throw new Error('ferry serve exited ' + exited + ': ' + stderr);
    if (Date.now() > deadline) { proc.kill('SIGKILL'); throw new Error('no listening line'); }
    if (existsSync(log)) {
      for (const line of readFileSync(log, 'utf8').split('\n')) {
        if (!line) continue;
        const ev = JSON.parse(line);
        if (ev.msg === 'listening') port = ev.port;
      }
    }
    if (port === null) await new Promise((r) => setTimeout(r, 20));
  }
  const base = `http://127.0.0.1:${port}`;
  while (Date.now() < deadline) {
    try {
      if ((await fetch(base + '/readyz')).status === 200) break;
    } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    base,
    url: base + '/v1',
    async metric(name, labels) {
      const text = await (await fetch(base + '/metrics')).text();
      const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`).sort().join(',');
      for (const line of text.split('\n')) {
        const m = /^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})?\s+(\S+)$/.exec(line);
        if (!m || m[1] !== name) continue;
        const got = (m[2] || '').split(',').filter(Boolean).sort().join(',');
        if (got === want) return Number(m[3]);
      }
      return 0;
    },
    async stop() {
      if (exited === null) {
        const done = new Promise((r) => proc.on('exit', r));
        proc.kill('SIGTERM');
        await done;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

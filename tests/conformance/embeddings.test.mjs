// /v1/embeddings through the official openai npm client (issue 6): string and
// array input, encoding_format float and base64 (explicit, and the client's own
// default, which asks for base64 and decodes it), against the built-in lexical
// embedder that every `ferry serve` has.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { loadOpenAI, startServer } from './server.mjs';

const OpenAI = await loadOpenAI();
const MODEL = 'ferry-lexical-384';
let srv;
let client;

before(async () => {
  srv = await startServer();
  client = new OpenAI({ baseURL: srv.url, apiKey: 'unused', maxRetries: 0, timeout: 60000 });
});

after(async () => {
  if (srv) await srv.stop();
});

const norm = (v) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));

function fromBase64(s) {
  const b = Buffer.from(s, 'base64');
  assert.equal(b.length % 4, 0);
  return Array.from(new Float32Array(b.buffer, b.byteOffset, b.length / 4));
}

test('the embedder is listed', async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.ok(ids.includes(MODEL), ids.join(','));
});

test('string input, float', async () => {
  const r = await client.embeddings.create({ model: MODEL, input: 'the quick brown fox',
    encoding_format: 'float' });
  assert.equal(r.object, 'list');
  assert.equal(r.model, MODEL);
  assert.equal(r.data.length, 1);
  const e = r.data[0];
  assert.equal(e.object, 'embedding');
  assert.equal(e.index, 0);
  assert.equal(e.embedding.length, 384);
  assert.ok(Math.abs(norm(e.embedding) - 1) < 1e-4, 'not unit length');
  assert.ok(r.usage.prompt_tokens > 0);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens);
});

test('array input, float: one row per input, in order', async () => {
  const input = ['alpha beta', 'gamma delta epsilon', 'alpha beta'];
  const r = await client.embeddings.create({ model: MODEL, input, encoding_format: 'float' });
  assert.equal(r.data.length, 3);
  r.data.forEach((e, i) => assert.equal(e.index, i));
  assert.deepEqual(r.data[0].embedding, r.data[2].embedding);
  assert.notDeepEqual(r.data[0].embedding, r.data[1].embedding);
  const one = await client.embeddings.create({ model: MODEL, input: 'gamma delta epsilon',
    encoding_format: 'float' });
  assert.deepEqual(one.data[0].embedding, r.data[1].embedding);
});

test('base64 equals float, bit for bit', async () => {
  const input = ['ferry carries tokens', 'a second line'];
  const f = await client.embeddings.create({ model: MODEL, input, encoding_format: 'float' });
  const b = await client.embeddings.create({ model: MODEL, input, encoding_format: 'base64' });
  assert.equal(b.data.length, 2);
  b.data.forEach((e, i) => {
    assert.equal(typeof e.embedding, 'string');
    const v = fromBase64(e.embedding);
    assert.equal(v.length, 384);
    // float JSON of an f32 round-trips through Math.fround exactly
    assert.deepEqual(v, f.data[i].embedding.map(Math.fround));
  });
  // the client's default: it asks for base64 and hands back decoded floats
  const d = await client.embeddings.create({ model: MODEL, input });
  d.data.forEach((e, i) => {
    assert.ok(Array.isArray(e.embedding));
    assert.deepEqual(e.embedding, f.data[i].embedding.map(Math.fround));
  });
});

test('errors surface as the client classes', async () => {
  await assert.rejects(client.embeddings.create({ model: 'nope', input: 'x' }),
    (e) => e instanceof OpenAI.NotFoundError && e.status === 404);
  await assert.rejects(client.embeddings.create({ model: MODEL, input: [] }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === 'input');
});

// The official openai npm client (pinned in package-lock.json) against
// `ferry serve`: models.list, chat (plain, streaming, streaming with usage),
// completions, max_tokens -> "length", a stop sequence -> "stop", the same seed
// -> the same text, 404 -> NotFoundError, 400 -> BadRequestError, an aborted
// stream followed by a normal request, 16 concurrent chats.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { loadOpenAI, startServer } from './server.mjs';

const OpenAI = await loadOpenAI();
let srv;
let client;

before(async () => {
  srv = await startServer();
  client = new OpenAI({ baseURL: srv.url, apiKey: 'unused', maxRetries: 0, timeout: 60000 });
});

after(async () => {
  if (srv) await srv.stop();
});

const msgs = (text) => [
  { role: 'system', content: 'You are terse.' },
  { role: 'user', content: text },
];

test('models.list', async () => {
  const ids = [];
  for await (const m of client.models.list()) {
    ids.push(m.id);
    assert.equal(m.object, 'model');
    assert.equal(typeof m.created, 'number');
    if (m.id === 'tiny') assert.equal(m.owned_by, 'ferry');
  }
  assert.ok(ids.includes('tiny'), ids.join(','));
  const one = await client.models.retrieve('tiny').catch((e) => e);
  // retrieve may not be served; when it is, it names the model
  if (!(one instanceof Error)) assert.equal(one.id, 'tiny');
});

test('chat, plain', async () => {
  const r = await client.chat.completions.create({
    model: 'tiny', messages: msgs('Say hello.'), max_tokens: 8, temperature: 0,
  });
  assert.equal(r.object, 'chat.completion');
  assert.match(r.id, /^chatcmpl-/);
  assert.equal(r.model, 'tiny');
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].index, 0);
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.equal(typeof r.choices[0].message.content, 'string');
  assert.ok(['stop', 'length'].includes(r.choices[0].finish_reason));
  assert.ok(r.usage.prompt_tokens > 0);
  assert.ok(r.usage.completion_tokens > 0 && r.usage.completion_tokens <= 8);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
  assert.equal(typeof r.system_fingerprint, 'string');
});

test('chat, streaming, equals the plain answer', async () => {
  const req = { model: 'tiny', messages: msgs('Count.'), max_tokens: 12, temperature: 0 };
  const plain = await client.chat.completions.create(req);
  const stream = await client.chat.completions.create({ ...req, stream: true });
  let text = '';
  let finish = null;
  let n = 0;
  let id = null;
  for await (const ch of stream) {
    n++;
    assert.equal(ch.object, 'chat.completion.chunk');
    id = id || ch.id;
    assert.equal(ch.id, id);
    assert.equal(ch.usage ?? null, null);
    const c = ch.choices[0];
    if (c.delta.content) text += c.delta.content;
    if (c.finish_reason) finish = c.finish_reason;
  }
  assert.ok(n >= 2, 'chunks: ' + n);
  assert.equal(text, plain.choices[0].message.content);
  assert.equal(finish, plain.choices[0].finish_reason);
});

test('chat, streaming with usage', async () => {
  const stream = await client.chat.completions.create({
    model: 'tiny', messages: msgs('Go on.'), max_tokens: 6, temperature: 0, ignore_eos: true,
    stream: true, stream_options: { include_usage: true },
  });
  let usage = null;
  let last = null;
  for await (const ch of stream) {
    last = ch;
    if (ch.usage) usage = ch.usage;
  }
  assert.ok(usage, 'no usage chunk');
  assert.deepEqual(last.choices, []);
  assert.equal(usage.completion_tokens, 6);
  assert.equal(usage.total_tokens, usage.prompt_tokens + 6);
});

test('completions', async () => {
  const r = await client.completions.create({
    model: 'tiny', prompt: 'Once upon a time', max_tokens: 10, temperature: 0,
  });
  assert.equal(r.object, 'text_completion');
  assert.equal(typeof r.choices[0].text, 'string');
  assert.ok(r.usage.completion_tokens >= 1);
  const s = await client.completions.create({
    model: 'tiny', prompt: 'Once upon a time', max_tokens: 10, temperature: 0, stream: true,
  });
  let text = '';
  for await (const ch of s) text += ch.choices[0]?.text ?? '';
  assert.equal(text, r.choices[0].text);
});

test('max_tokens gives finish_reason "length"', async () => {
  const r = await client.chat.completions.create({
    model: 'tiny', messages: msgs('Talk.'), max_tokens: 5, temperature: 0, ignore_eos: true,
  });
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.equal(r.usage.completion_tokens, 5);
  const c = await client.chat.completions.create({
    model: 'tiny', messages: msgs('Talk.'), max_completion_tokens: 3, temperature: 0,
    ignore_eos: true,
  });
  assert.equal(c.choices[0].finish_reason, 'length');
  assert.equal(c.usage.completion_tokens, 3);
});

test('a stop sequence gives finish_reason "stop"', async () => {
  const req = { model: 'tiny', prompt: 'The river', max_tokens: 24, temperature: 0,
    ignore_eos: true };
  const full = (await client.completions.create(req)).choices[0].text;
  // a two-character piece from the middle of the greedy text as the stop string
  let stop = null;
  for (let k = Math.floor(full.length / 2); k + 2 <= full.length && !stop; k++) {
    const piece = full.slice(k, k + 2);
    if (!piece.includes('\uFFFD') && piece.trim().length === 2) stop = piece;
  }
  assert.ok(stop, 'no usable stop piece in ' + JSON.stringify(full));
  const r = await client.completions.create({ ...req, stop: [stop, 'never-seen-zzz'] });
  assert.equal(r.choices[0].finish_reason, 'stop');
  assert.equal(r.choices[0].text, full.slice(0, full.indexOf(stop)));
  const s = await client.completions.create({ ...req, stop, stream: true });
  let text = '';
  let finish = null;
  for await (const ch of s) {
    text += ch.choices[0]?.text ?? '';
    finish = ch.choices[0]?.finish_reason || finish;
  }
  assert.equal(finish, 'stop');
  assert.equal(text, r.choices[0].text);
});

test('the same seed gives the same text', async () => {
  const req = (seed) => ({ model: 'tiny', messages: msgs('Improvise.'), max_tokens: 16,
    temperature: 1.0, seed, ignore_eos: true });
  const a = await client.chat.completions.create(req(42));
  const b = await client.chat.completions.create(req(42));
  assert.equal(a.choices[0].message.content, b.choices[0].message.content);
  const others = await Promise.all([1, 2, 3].map((s) => client.chat.completions.create(req(s))));
  assert.ok(others.some((o) => o.choices[0].message.content !== a.choices[0].message.content),
    'every seed gave the same text');
});

test('404 surfaces as NotFoundError, 400 as BadRequestError', async () => {
  await assert.rejects(
    client.chat.completions.create({ model: 'no-such-model', messages: msgs('hi') }),
    (e) => {
      assert.ok(e instanceof OpenAI.NotFoundError, e.constructor.name);
      assert.equal(e.status, 404);
      assert.equal(e.code, 'model_not_found');
      return true;
    });
  await assert.rejects(
    client.chat.completions.create({ model: 'tiny', messages: msgs('hi'), temperature: 7 }),
    (e) => {
      assert.ok(e instanceof OpenAI.BadRequestError, e.constructor.name);
      assert.equal(e.status, 400);
      assert.equal(e.param, 'temperature');
      return true;
    });
  await assert.rejects(
    client.completions.create({ model: 'tiny', prompt: 'x', n: 3 }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === 'n');
});

test('an aborted stream, then a normal request', async () => {
  const aborts = () => srv.metric('ferry_requests_finished_total', { model: 'long', reason: 'abort' });
  const a0 = await aborts();
  const ac = new AbortController();
  // "long" has a 32k context: 30000 tokens take far longer than this test
  const stream = await client.chat.completions.create({
    model: 'long', messages: msgs('Ramble. '.repeat(100)), max_tokens: 30000, temperature: 0,
    ignore_eos: true, stream: true,
  }, { signal: ac.signal });
  let n = 0;
  let finish = null;
  try {
    for await (const ch of stream) {
      if (ch.choices[0]?.delta?.content && ++n === 2) ac.abort();
      finish = ch.choices[0]?.finish_reason || finish;
    }
  } catch (e) { // the client ends the iteration quietly or throws its abort error
    assert.ok(e instanceof OpenAI.APIUserAbortError || e.name === 'AbortError', String(e));
  }
  assert.ok(n >= 2 && finish === null, 'the stream was not cut short');
  const r = await client.chat.completions.create({
    model: 'tiny', messages: msgs('Again.'), max_tokens: 4, temperature: 0, ignore_eos: true,
  });
  assert.equal(r.usage.completion_tokens, 4);
  // the server cancelled the aborted request and its blocks are free again
  const deadline = Date.now() + 10000;
  while (await srv.metric('ferry_kv_cache_usage_ratio', { model: 'long' }) !== 0 ||
         await aborts() !== a0 + 1) {
    assert.ok(Date.now() < deadline, 'the aborted request was not cancelled');
    await new Promise((res) => setTimeout(res, 20));
  }
});

test('16 concurrent chats answer as each does alone', async () => {
  const req = (i) => ({ model: 'tiny', messages: msgs('Question number ' + i + '?'),
    max_tokens: 12, temperature: 0, ignore_eos: true });
  const alone = [];
  for (let i = 0; i < 16; i++)
    alone.push((await client.chat.completions.create(req(i))).choices[0].message.content);
  const together = await Promise.all(
    Array.from({ length: 16 }, (_, i) => client.chat.completions.create(req(i))));
  together.forEach((r, i) => assert.equal(r.choices[0].message.content, alone[i], 'chat ' + i));
});

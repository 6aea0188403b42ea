/*
 * ferry generate — run a model on one prompt and stream the text to stdout.
 *
 * The single-sequence use of the batched forward pass: one llama_ctx, paged KV
 * storage for one sequence with the trivial block table 0, 1, 2, ..., the prompt
 * fed in chunks of up to 512 tokens, then one token per step. Sampling goes
 * through model/sample; text through tok's streaming detokenizer, so a partial
 * UTF-8 character is never printed. Speeds go to stderr.
 *
 * For tests and tools (documented in docs/reference.md):
 *   --ids 1,2,3        the prompt as token ids (no tokenizer involved)
 *   --json             print {"prompt_ids", "tokens", "text", "n_vocab"} instead of
 *                      streaming text
 *   --dump-logits F    write the logits rows computed, as little-endian f32, n_vocab
 *                      per row: one row per prompt position, then one per generated
 *                      token that was fed back (n_prompt + n_generated - 1 rows)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "base/buf.h"
#include "base/clock.h"
#include "base/pool.h"
#include "cli/cli.h"
#include "model/gguf.h"
#include "model/llama.h"
#include "model/sample.h"
#include "model/tok.h"

#define GEN_IDS_MAX 65536

static void usage(FILE *f)
{
    fprintf(f,
            "usage: ferry generate -m MODEL -p PROMPT [-n N] [--temp T] [--seed S] [-t THREADS]\n"
            "                      [--top-k K] [--top-p P] [--min-p P] [--repeat-penalty R]\n"
            "                      [--ctx N]\n"
            "  streams the continuation of PROMPT to stdout; speeds to stderr\n"
            "  -n N              tokens to generate (default 128)\n"
            "  --temp T          temperature, 0 = greedy (default 0.8)\n"
            "  --seed S          sampling seed (default: from the clock; printed)\n"
            "  -t THREADS        compute threads (default: cores)\n"
            "  --top-k K         keep the K most likely tokens (default 40, 0 = off)\n"
            "  --top-p P         nucleus sampling (default 0.95, 1 = off)\n"
            "  --min-p P         drop tokens below P x the best one's probability (default 0.05)\n"
            "  --repeat-penalty R  penalty on the last 64 tokens (default 1 = off)\n"
            "  --ctx N           context length (default: the model's, at most 4096)\n"
            "  --ignore-eos      keep generating past end-of-generation tokens\n"
            "testing: --ids LIST (prompt as ids), --json, --dump-logits FILE (see "
            "docs/reference.md)\n");
}

static int parse_ids(const char *s, int32_t *ids, size_t cap, size_t *n)
{
    *n = 0;
    while (*s) {
        char tmp[16];
        size_t k = 0;
        while (s[k] && s[k] != ',')
            k++;
        if (k == 0 || k >= sizeof tmp || *n >= cap)
            return ERR_INVAL;
        memcpy(tmp, s, k);
        tmp[k] = 0;
        int64_t v;
        if (parse_i64(tmp, 0, INT32_MAX, &v))
            return ERR_INVAL;
        ids[(*n)++] = (int32_t)v;
        s += k;
        if (*s == ',')
            s++;
    }
    return *n ? 0 : ERR_INVAL;
}

static void json_ids(FILE *f, const int32_t *ids, size_t n)
{
    fputc('[', f);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s%d", i ? "," : "", (int)ids[i]);
    fputc(']', f);
}

typedef struct opts {
    const char *path, *prompt, *ids, *dump;
    int64_t n, threads, seed, top_k, ctx;
    double temp, top_p, min_p, rep;
    bool has_seed, json, ignore_eos;
} opts;

static int parse_opts(int argc, char **argv, opts *o)
{
    memset(o, 0, sizeof *o);
    o->n = 128;
    o->temp = 0.8;
    o->top_k = 40;
    o->top_p = 0.95;
    o->min_p = 0.05;
    o->rep = 1.0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 1;
        } else if (!strcmp(a, "--json")) {
            o->json = true;
            continue;
        } else if (!strcmp(a, "--ignore-eos")) {
            o->ignore_eos = true;
            continue;
        }
        if (!v) {
            cli_errorf("generate: unknown or incomplete option \"%s\" (see --help)", a);
            return -1;
        }
        i++;
        if (!strcmp(a, "-m"))
            o->path = v;
        else if (!strcmp(a, "-p"))
            o->prompt = v;
        else if (!strcmp(a, "--ids"))
            o->ids = v;
        else if (!strcmp(a, "--dump-logits"))
            o->dump = v;
        else if (!strcmp(a, "-n"))
            bad = parse_i64(v, 1, SAMPLE_MAX_TOKENS_MAX, &o->n);
        else if (!strcmp(a, "-t"))
            bad = parse_i64(v, 1, POOL_THREADS_MAX, &o->threads);
        else if (!strcmp(a, "--seed")) {
            bad = parse_i64(v, 0, INT64_MAX, &o->seed);
            o->has_seed = true;
        } else if (!strcmp(a, "--top-k"))
            bad = parse_i64(v, 0, INT32_MAX, &o->top_k);
        else if (!strcmp(a, "--ctx"))
            bad = parse_i64(v, 1, LLAMA_CTX_MAX, &o->ctx);
        else if (!strcmp(a, "--temp"))
            bad = parse_f64(v, &o->temp);
        else if (!strcmp(a, "--top-p"))
            bad = parse_f64(v, &o->top_p);
        else if (!strcmp(a, "--min-p"))
            bad = parse_f64(v, &o->min_p);
        else if (!strcmp(a, "--repeat-penalty"))
            bad = parse_f64(v, &o->rep);
        else {
            cli_errorf("generate: unknown option \"%s\" (see --help)", a);
            return -1;
        }
        if (bad) {
            cli_errorf("generate: %s %s: not a valid value", a, v);
            return -1;
        }
    }
    if (!o->path || (!o->prompt && !o->ids)) {
        cli_errorf("generate: -m MODEL and -p PROMPT are required (see --help)");
        return -1;
    }
    return 0;
}

int cli_cmd_generate(int argc, char **argv)
{
    opts o;
    int prc = parse_opts(argc, argv, &o);
    if (prc)
        return prc > 0 ? 0 : 2;

    int ret = 2, rc;
    err_msg e;
    err_clear(&e);
    model *m = NULL;
    tok_vocab *voc = NULL;
    pool *p = NULL;
    llama_ctx *c = NULL;
    llama_kv *kv = NULL;
    sample_seq *ss = NULL;
    sample_scratch *sc = NULL;
    int32_t *ids = NULL, *table = NULL;
    float *logits = NULL;
    FILE *dump = NULL;
    tok_list tl;
    tok_list_init(&tl, GEN_IDS_MAX);
    buf text, piece;
    buf_init(&text, (size_t)1 << 30);
    buf_init(&piece, (size_t)1 << 20);
    char *out = NULL;

    if ((rc = model_load(o.path, &m, &e)) < 0) {
        cli_errorf("%s", err_text(&e, rc));
        goto done;
    }
    const llama_hparams *hp = model_hparams(m);
    if ((rc = tok_vocab_from_gguf(model_gguf(m), &voc, &e)) < 0) {
        cli_errorf("%s", err_text(&e, rc));
        goto done;
    }

    // the prompt as ids
    size_t n_prompt = 0;
    ids = malloc(((size_t)GEN_IDS_MAX + (size_t)o.n) * sizeof *ids);
    if (!ids)
        goto nomem;
    if (o.ids) {
        if (parse_ids(o.ids, ids, GEN_IDS_MAX, &n_prompt) < 0) {
            cli_errorf("generate: --ids: expected comma-separated token ids");
            goto done;
        }
    } else {
        if ((rc = tok_tokenize(voc, o.prompt, strlen(o.prompt), TOK_ADD_SPECIAL, &tl, &e)) < 0) {
            cli_errorf("generate: prompt: %s", err_text(&e, rc));
            goto done;
        }
        memcpy(ids, tl.ids, tl.n * sizeof *ids);
        n_prompt = tl.n;
    }
    if (n_prompt == 0) {
        cli_errorf("generate: the prompt has no tokens");
        goto done;
    }

    size_t ctx = o.ctx ? (size_t)o.ctx : (hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096);
    if (n_prompt + (size_t)o.n > ctx) {
        cli_errorf("generate: %zu prompt tokens + %lld to generate exceed the context of %zu "
                   "(see --ctx)", n_prompt, (long long)o.n, ctx);
        goto done;
    }
    ret = 1;
    if (pool_new((int)o.threads, &p) < 0) {
        cli_errorf("generate: cannot start %lld threads", (long long)o.threads);
        goto done;
    }
    llama_config cfg = llama_config_default();
    cfg.max_ctx = ctx;
    cfg.max_batch_tokens = ctx < 512 ? ctx : 512;
    cfg.max_logits = o.dump ? cfg.max_batch_tokens : 1;
    cfg.pool = p;
    size_t nb = (ctx + LLAMA_KV_BLOCK_TOKENS_DEFAULT - 1) / LLAMA_KV_BLOCK_TOKENS_DEFAULT;
    if ((rc = llama_ctx_new(m, &cfg, &c, &e)) < 0 ||
        (rc = llama_kv_new(m, nb, LLAMA_KV_BLOCK_TOKENS_DEFAULT, &kv, &e)) < 0) {
        cli_errorf("%s", err_text(&e, rc));
        goto done;
    }
    sample_params sp = sample_params_default();
    sp.temperature = (float)o.temp;
    sp.top_k = (int32_t)o.top_k;
    sp.top_p = (float)o.top_p;
    sp.min_p = (float)o.min_p;
    sp.repetition_penalty = (float)o.rep;
    sp.max_tokens = (size_t)o.n;
    sp.seed = o.has_seed ? (uint64_t)o.seed : clock_wall_ns();
    if ((rc = sample_seq_new(&sp, (int32_t)hp->n_vocab, &ss, &e)) < 0) {
        cli_errorf("generate: %s", err_text(&e, rc));
        ret = 2;
        goto done;
    }
    if (sample_seq_add_prompt(ss, ids, n_prompt) < 0) {
        cli_errorf("generate: a prompt token id is outside the vocabulary of %u", hp->n_vocab);
        ret = 2;
        goto done;
    }
    if (!o.has_seed && sp.temperature > 0)
        fprintf(stderr, "seed %llu\n", (unsigned long long)sp.seed);
    table = malloc(nb * sizeof *table);
    logits = malloc(cfg.max_logits * hp->n_vocab * sizeof *logits);
    out = malloc((size_t)(1 << 20) + SAMPLE_STOP_BYTES_MAX);
    if (!table || !logits || !out || sample_scratch_new((int32_t)hp->n_vocab, &sc) < 0)
        goto nomem;
    for (size_t i = 0; i < nb; i++)
        table[i] = (int32_t)i;
    if (o.dump && !(dump = fopen(o.dump, "wb"))) {
        cli_errorf("generate: cannot write %s", o.dump);
        goto done;
    }

    // prefill in chunks; the last chunk's last row gives the first token's logits
    uint64_t t0 = clock_mono_ns();
    size_t done_n = 0;
    float *last = logits;
    while (done_n < n_prompt) {
        size_t k = n_prompt - done_n < cfg.max_batch_tokens ? n_prompt - done_n
                                                             : cfg.max_batch_tokens;
        bool is_last = done_n + k == n_prompt;
        llama_span s = {ids + done_n, k, done_n, table, nb, o.dump ? k : (is_last ? 1 : 0)};
        if ((rc = llama_forward(c, kv, &s, 1, logits, &e)) < 0) {
            cli_errorf("%s", err_text(&e, rc));
            goto done;
        }
        if (dump && fwrite(logits, sizeof(float), s.n_logits * hp->n_vocab, dump) !=
                        s.n_logits * hp->n_vocab)
            goto write_fail;
        last = logits + (s.n_logits ? s.n_logits - 1 : 0) * hp->n_vocab;
        done_n += k;
    }
    uint64_t t1 = clock_mono_ns();

    if (!o.json && o.prompt) {
        fputs(o.prompt, stdout);
        fflush(stdout);
    }

    // decode
    tok_decoder dec;
    tok_decoder_init(&dec, voc, 0);
    size_t n_gen = 0;
    uint64_t t2 = t1;
    for (;;) {
        sample_result r;
        if ((rc = sample_next(ss, sc, last, &r)) < 0) {
            cli_errorf("generate: no token can be sampled (all logits are -inf or NaN)");
            goto done;
        }
        int32_t t = r.token;
        ids[n_prompt + n_gen++] = t;
        bool eog = !o.ignore_eos && tok_vocab_is_eog(voc, t);
        buf_reset(&piece);
        if (!eog && tok_decoder_push(&dec, t, &piece) < 0)
            goto nomem;
        size_t on = 0;
        int st = sample_accept(ss, t, piece.data, piece.len, out, (size_t)(1 << 20) +
                               SAMPLE_STOP_BYTES_MAX, &on);
        if (st < 0)
            goto nomem;
        if (eog) {
            on += sample_flush(ss, out + on, SAMPLE_STOP_BYTES_MAX);
            buf_reset(&piece);
            if (tok_decoder_flush(&dec, &piece) < 0)
                goto nomem;
            memcpy(out + on, piece.data, piece.len);
            on += piece.len;
        } else if (st == SAMPLE_LENGTH) {
            buf_reset(&piece);
            if (tok_decoder_flush(&dec, &piece) < 0)
                goto nomem;
            memcpy(out + on, piece.data, piece.len);
            on += piece.len;
        }
        if (o.json) {
            if (buf_append(&text, out, on) < 0)
                goto nomem;
        } else {
            fwrite(out, 1, on, stdout);
            fflush(stdout);
        }
        if (eog || st != SAMPLE_CONTINUE)
            break;
        llama_span s = {&ids[n_prompt + n_gen - 1], 1, n_prompt + n_gen - 1, table, nb, 1};
        if ((rc = llama_forward(c, kv, &s, 1, logits, &e)) < 0) {
            cli_errorf("%s", err_text(&e, rc));
            goto done;
        }
        last = logits;
        if (dump && fwrite(logits, sizeof(float), hp->n_vocab, dump) != hp->n_vocab)
            goto write_fail;
    }
    t2 = clock_mono_ns();
    if (o.json) {
        printf("{\"prompt_ids\":");
        json_ids(stdout, ids, n_prompt);
        printf(",\"tokens\":");
        json_ids(stdout, ids + n_prompt, n_gen);
        buf jb;
        buf_init(&jb, (size_t)1 << 31);
        if (buf_append_json_str(&jb, text.data ? text.data : "", text.len) < 0) {
            buf_deinit(&jb);
            goto nomem;
        }
        printf(",\"text\":\"%.*s\",\"n_vocab\":%u}\n", (int)jb.len, jb.data, hp->n_vocab);
        buf_deinit(&jb);
    } else {
        fputc('\n', stdout);
    }
    double pt = (double)(t1 - t0) * 1e-9, gt = (double)(t2 - t1) * 1e-9;
    fprintf(stderr, "prompt: %zu tokens in %.3f s, %.1f tok/s; generation: %zu tokens in %.3f s, "
            "%.1f tok/s (%d threads)\n", n_prompt, pt, (double)n_prompt / pt, n_gen,
            gt, gt > 0 ? (double)n_gen / gt : 0.0, pool_threads(p));
    ret = 0;
    goto done;
write_fail:
    cli_errorf("generate: writing %s failed", o.dump);
    goto done;
nomem:
    cli_errorf("generate: out of memory");
    ret = 1;
done:
    if (dump && fclose(dump) != 0 && ret == 0) {
        cli_errorf("generate: writing %s failed", o.dump);
        ret = 1;
    }
    free(out);
    buf_deinit(&text);
    buf_deinit(&piece);
    tok_list_free(&tl);
    free(logits);
    free(table);
    free(ids);
    sample_scratch_free(sc);
    sample_seq_free(ss);
    llama_kv_free(kv);
    llama_ctx_free(c);
    pool_free(p);
    tok_vocab_free(voc);
    model_unref(m);
    return ret;
}

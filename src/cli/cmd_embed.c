/*
 * ferry embed — print the embedding vectors of texts.
 *
 *   ferry embed -m MODEL.gguf [--json] [-t THREADS] TEXT...
 *   ferry embed --lexical [--json] TEXT...
 *
 * With a `bert` GGUF model all texts go through the encoder in one batched
 * call (model/bert); with a decoder (`llama`, `qwen2`) each text's vector is
 * the mean of its last hidden states (model/embed.h); --lexical uses the
 * built-in hashed lexical embedder (model/lex, 384 dims). Plain output: one
 * line per text, the vector's floats separated by spaces (%.9g, so the f32
 * values round-trip). --json prints {"model", "arch", "dim", "pooling",
 * "data": [{"index", "tokens", "embedding"}]}.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "base/buf.h"
#include "base/pool.h"
#include "cli/cli.h"
#include "model/embed.h"
#include "model/gguf.h"
#include "model/lex.h"

#define EMBED_TEXTS_MAX 4096
#define EMBED_CTX_MAX (1 << 20) // LLAMA_CTX_MAX

static void usage(FILE *f)
{
    fprintf(f, "usage: ferry embed -m MODEL.gguf [--json] [-t THREADS] TEXT...\n"
               "       ferry embed --lexical [--json] TEXT...\n"
               "  prints one embedding per TEXT (L2-normalized), one line of floats each\n"
               "  -m MODEL     a bert-architecture GGUF embedding model (mean or CLS pooling\n"
               "               from its metadata), or a llama/qwen2 decoder (mean of the last\n"
               "               hidden states, after the final norm)\n"
               "  --ctx N      decoder: longest text in tokens (default min(model, %d))\n"
               "  --lexical    the built-in lexical embedder (" LEX_EMBED_NAME ")\n"
               "  --json       {\"model\",\"dim\",\"pooling\",\"data\":[{\"index\",\"tokens\","
               "\"embedding\"}]}\n"
               "  -t THREADS   compute threads (default: cores)\n",
            EMBED_DEC_CTX_DEFAULT);
}

static void print_vec(buf *b, const float *v, size_t dim, bool json)
{
    for (size_t i = 0; i < dim; i++)
        (void)!buf_printf(b, "%s%.9g", i ? (json ? "," : " ") : "", (double)v[i]);
}

int cli_cmd_embed(int argc, char **argv)
{
    const char *model_path = NULL;
    bool json = false, lexical = false;
    int64_t threads = 0, ctx = 0;
    const char **texts = calloc((size_t)argc, sizeof *texts);
    size_t n = 0;
    if (!texts) {
        cli_errorf("embed: out of memory");
        return 1;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            free(texts);
            return 0;
        } else if (strcmp(a, "--json") == 0) {
            json = true;
        } else if (strcmp(a, "--lexical") == 0) {
            lexical = true;
        } else if ((strcmp(a, "-m") == 0 || strcmp(a, "--model") == 0) && i + 1 < argc) {
            model_path = argv[++i];
        } else if (strcmp(a, "-t") == 0 && i + 1 < argc) {
            if (parse_i64(argv[++i], 1, POOL_THREADS_MAX, &threads) != 0) {
                cli_errorf("embed: -t %s is not a thread count in [1, %d]", argv[i],
                           POOL_THREADS_MAX);
                free(texts);
                return 2;
            }
        } else if (strcmp(a, "--ctx") == 0 && i + 1 < argc) {
            if (parse_i64(argv[++i], 1, EMBED_CTX_MAX, &ctx) != 0) {
                cli_errorf("embed: --ctx %s is not a token count in [1, %d]", argv[i],
                           EMBED_CTX_MAX);
                free(texts);
                return 2;
            }
        } else if (strcmp(a, "--") == 0) {
            while (++i < argc)
                texts[n++] = argv[i];
        } else if (a[0] == '-' && a[1] != 0) {
            cli_errorf("embed: unknown option %s (see --help)", a);
            free(texts);
            return 2;
        } else {
            texts[n++] = a;
        }
    }
    if ((model_path != NULL) == lexical || n == 0 || n > EMBED_TEXTS_MAX) {
        cli_errorf(n > EMBED_TEXTS_MAX ? "embed: at most %d texts per call"
                                       : "embed: give -m MODEL or --lexical, and at least one "
                                         "TEXT (see --help; limit %d)",
                   EMBED_TEXTS_MAX);
        free(texts);
        return 2;
    }

    int status = 1;
    err_msg e;
    err_clear(&e);
    embed_model *m = NULL;
    pool *p = NULL;
    float *out = NULL;
    size_t *lens = calloc(n, sizeof *lens), *ntok = calloc(n, sizeof *ntok);
    size_t dim = LEX_EMBED_DIM, n_cut = 0;
    const char *name = LEX_EMBED_NAME, *pooling = "hashed", *arch = "lexical";
    char name_buf[256];
    if (!lens || !ntok)
        goto nomem;
    for (size_t i = 0; i < n; i++)
        lens[i] = strlen(texts[i]);

    if (lexical) {
        if (!(out = malloc(n * dim * sizeof *out)))
            goto nomem;
        for (size_t i = 0; i < n; i++) {
            lex_embed(texts[i], lens[i], out + i * dim, dim);
            ntok[i] = lex_count_terms(texts[i], lens[i]);
        }
    } else {
        if (pool_new((int)threads, &p) != 0) {
            cli_errorf("embed: cannot start %d compute threads", (int)threads);
            goto out;
        }
        embed_config cfg = embed_config_default();
        cfg.pool = p;
        cfg.max_ctx = (size_t)ctx;
        if (embed_load(model_path, &cfg, &m, &e) != 0) {
            cli_errorf("embed: %s: %s", model_path, e.text);
            status = e.code == ERR_NOMEM ? 1 : 2;
            goto out;
        }
        dim = embed_dim(m);
        pooling = embed_pooling(m);
        arch = embed_arch(m);
        str gn = {0};
        (void)!gguf_get_str(embed_gguf(m), "general.name", &gn, NULL);
        snprintf(name_buf, sizeof name_buf, "%.*s", (int)MIN(gn.n, 200), gn.n ? gn.p : arch);
        name = name_buf;
        if (!(out = malloc(n * dim * sizeof *out)))
            goto nomem;
        if (embed_texts(m, texts, lens, n, out, ntok, &n_cut, &e) != 0) {
            cli_errorf("embed: %s", e.text);
            status = e.code == ERR_NOMEM ? 1 : 2;
            goto out;
        }
        if (n_cut)
            fprintf(stderr, "ferry: embed: %zu text(s) cut to the model's %zu tokens\n", n_cut,
                    embed_n_ctx(m));
    }

    buf b;
    buf_init(&b, (size_t)1 << 30);
    if (json) {
        (void)!buf_append_str(&b, "{\"model\":\"");
        (void)!buf_append_json_str(&b, name, strlen(name));
        (void)!buf_printf(&b, "\",\"arch\":\"%s\",\"dim\":%zu,\"pooling\":\"%s\",\"data\":[", arch,
                          dim, pooling);
        for (size_t i = 0; i < n; i++) {
            (void)!buf_printf(&b, "%s{\"index\":%zu,\"tokens\":%zu,\"embedding\":[", i ? "," : "",
                              i, ntok[i]);
            print_vec(&b, out + i * dim, dim, true);
            (void)!buf_append_str(&b, "]}");
        }
        (void)!buf_append_str(&b, "]}\n");
    } else {
        for (size_t i = 0; i < n; i++) {
            print_vec(&b, out + i * dim, dim, false);
            (void)!buf_append_char(&b, '\n');
        }
    }
    fwrite(b.data, 1, b.len, stdout);
    buf_deinit(&b);
    status = 0;
    goto out;
nomem:
    cli_errorf("embed: out of memory");
out:
    embed_free(m);
    pool_free(p);
    free(out);
    free(lens);
    free(ntok);
    free(texts);
    return status;
}

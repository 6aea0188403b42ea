/*
 * cli/cmd_tokenize — `ferry tokenize`: print the token ids of a text under a
 * GGUF file's tokenizer; with --cases, the llama.cpp test-vector format.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "cli/cli.h"
#include "model/gguf.h"
#include "model/tok.h"

#define TOKENIZE_FILE_MAX ((size_t)64 << 20) // --file / --cases input ceiling
#define CASE_SEP "\n__ggml_vocab_test__\n"

static void usage(FILE *f)
{
    fprintf(
        f, "usage: ferry tokenize -m VOCAB.gguf [TEXT | --file F | --cases F.inp] [--special] "
           "[--bos]\n"
           "  -m, --model PATH  GGUF file whose tokenizer.ggml.* metadata to use\n"
           "  TEXT              text to tokenize (else --file or --cases)\n"
           "  --file F          tokenize the whole content of F\n"
           "  --cases F.inp     F holds test strings, each followed by "
           "\"\\n__ggml_vocab_test__\\n\";\n"
           "                    print one line per string: \" id id ...\" (llama.cpp .out format;\n"
           "                    no BOS/EOS, no special-token parsing)\n"
           "  --special         recognise control-token text such as <s> or <|im_end|>\n"
           "  --bos             add BOS/EOS (BERT: [CLS]/[SEP]) as the vocab says\n"
           "Prints the ids separated by spaces on one line. Exit 2 on bad input.\n");
}

static int read_file(const char *path, buf *b)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        cli_errorf("cannot open %s: %s", path, strerror(errno));
        return 2;
    }
    char tmp[65536];
    size_t n;
    int rc = 0;
    while ((n = fread(tmp, 1, sizeof tmp, fp)) > 0) {
        if ((rc = buf_append(b, tmp, n)) != 0)
            break;
    }
    bool err = ferror(fp);
    fclose(fp);
    if (rc) {
        cli_errorf("%s is larger than %zu bytes", path, TOKENIZE_FILE_MAX);
        return 2;
    }
    if (err) {
        cli_errorf("cannot read %s", path);
        return 2;
    }
    return 0;
}

static int print_ids(const tok_vocab *v, const char *text, size_t len, unsigned flags,
                     bool lead_space)
{
    tok_list l;
    tok_list_init(&l, len * 4 + 16);
    err_msg e;
    err_clear(&e);
    int rc = tok_tokenize(v, text, len, flags, &l, &e);
    if (rc) {
        cli_errorf("tokenize: %s", err_text(&e, rc));
        tok_list_free(&l);
        return 2;
    }
    for (size_t i = 0; i < l.n; i++)
        printf(lead_space ? " %d" : (i ? " %d" : "%d"), (int)l.ids[i]);
    putchar('\n');
    tok_list_free(&l);
    return 0;
}

int cli_cmd_tokenize(int argc, char **argv)
{
    const char *model = NULL, *text = NULL, *file = NULL, *cases = NULL;
    unsigned flags = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && i + 1 < argc) {
            model = argv[++i];
        } else if (!strcmp(a, "--file") && i + 1 < argc) {
            file = argv[++i];
        } else if (!strcmp(a, "--cases") && i + 1 < argc) {
            cases = argv[++i];
        } else if (!strcmp(a, "--special")) {
            flags |= TOK_PARSE_SPECIAL;
        } else if (!strcmp(a, "--bos")) {
            flags |= TOK_ADD_SPECIAL;
        } else if (a[0] == '-' && a[1] != 0) {
            cli_errorf("tokenize: unknown or incomplete option %s (see --help)", a);
            return 2;
        } else if (!text) {
            text = a;
        } else {
            cli_errorf("tokenize: more than one TEXT argument");
            return 2;
        }
    }
    if (!model) {
        cli_errorf("tokenize: -m VOCAB.gguf is required");
        return 2;
    }
    if ((text != NULL) + (file != NULL) + (cases != NULL) != 1) {
        cli_errorf("tokenize: give exactly one of TEXT, --file F, --cases F");
        return 2;
    }
    err_msg e;
    err_clear(&e);
    gguf_file *gf = NULL;
    int rc = gguf_open(model, &gf, &e);
    if (rc) {
        cli_errorf("%s: %s", model, err_text(&e, rc));
        return 2;
    }
    tok_vocab *v = NULL;
    rc = tok_vocab_from_gguf(gf, &v, &e);
    gguf_close(gf);
    if (rc) {
        cli_errorf("%s: %s", model, err_text(&e, rc));
        return 2;
    }
    int status = 0;
    if (text) {
        status = print_ids(v, text, strlen(text), flags, false);
    } else {
        buf b;
        buf_init(&b, TOKENIZE_FILE_MAX);
        status = read_file(file ? file : cases, &b);
        if (status == 0 && file) {
            status = print_ids(v, b.data ? b.data : "", b.len, flags, false);
        } else if (status == 0) {
            // Cases: each string is followed by the separator; what follows the last one is not
            // a case (the reference reader stops at end of file).
            const char *p = b.data ? b.data : "";
            size_t left = b.len, sl = strlen(CASE_SEP);
            while (status == 0 && left > 0) {
                const char *m = memmem(p, left, CASE_SEP, sl);
                size_t n = m ? (size_t)(m - p) : left;
                if (!m && n == 0)
                    break;
                status = print_ids(v, p, n, 0, true);
                if (!m)
                    break;
                p = m + sl;
                left -= n + sl;
            }
        }
        buf_deinit(&b);
    }
    tok_vocab_free(v);
    return status;
}

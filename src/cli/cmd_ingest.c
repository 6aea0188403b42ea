/*
 * ferry ingest — load files into a knowledge-base collection over the HTTP API.
 *
 *   ferry ingest --url URL --collection C [--api-key KEY] [--batch N] PATH...
 *
 * URL is the API root (http://127.0.0.1:8080/v1). PATHs are files or
 * directories (walked recursively; files of other types are skipped):
 *   .txt .md        the file is one document, id = its path
 *   .html .htm      text extracted: script/style dropped, tags removed, block
 *                   tags (p, div, br, li, tr, h1-h6) end lines, headings become
 *                   Markdown "#" lines so the chunker cuts at them, entities
 *                   (&amp; &lt; &gt; &quot; &#39; &nbsp; &#N; &#xH;) decoded
 *   .jsonl          one document per line: {"text", "id"?, "metadata"?}; id
 *                   defaults to PATH:LINE
 * Documents go in batches (POST URL/collections/C/documents); the collection
 * is created (POST URL/collections) when the first batch finds it missing.
 * A progress bar goes to stderr when it is a terminal; the summary (documents,
 * chunks, tokens, time) to stdout. Exit 0 when every document was stored, 1
 * when the server refused some, 2 on usage or unreadable input.
 */
#include <curl/curl.h>
#include <errno.h>
#include <ftw.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"
#include "base/buf.h"
#include "base/clock.h"
#include "cli/cli.h"

#define INGEST_FILE_MAX ((size_t)64 << 20)
#define INGEST_FILES_MAX 100000
#define INGEST_BATCH_BYTES ((size_t)4 << 20)

typedef struct ingest {
    const char *url, *coll, *key;
    size_t batch;
    CURL *curl;
    json_t *docs; // the batch being filled
    size_t batch_bytes;
    size_t n_docs, n_chunks, n_tokens, n_failed;
    size_t files_done, files_total;
    bool is_tty, created;
    char **files;
    size_t nfiles, capfiles;
} ingest;

static ingest *g_walk; // nftw has no context argument

static void usage(FILE *f)
{
    fprintf(f, "usage: ferry ingest --url URL --collection C [--api-key KEY] [--batch N] PATH...\n"
               "  loads .txt .md .html .jsonl files (directories recursively) into collection C\n"
               "  of the server at URL (the API root, e.g. http://127.0.0.1:8080/v1); creates\n"
               "  the collection when missing. --batch: documents per request (default 32).\n"
               "  Prints documents, chunks, tokens and time at the end.\n");
}

/* ---------------------------------------------------------------- HTTP */

static size_t on_body(char *p, size_t sz, size_t n, void *arg)
{
    buf *b = arg;
    return buf_append(b, p, sz * n) == 0 ? sz * n : 0;
}

/* POSTs body to URL + path; returns the HTTP status (or -1) and the response in out. */
static long post(ingest *g, const char *path, const char *body, size_t len, buf *out)
{
    char url[2048];
    size_t ul = strlen(g->url);
    while (ul > 0 && g->url[ul - 1] == '/')
        ul--;
    snprintf(url, sizeof url, "%.*s%s", (int)ul, g->url, path);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    char auth[600];
    if (g->key) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", g->key);
        h = curl_slist_append(h, auth);
    }
    buf_reset(out);
    curl_easy_reset(g->curl);
    curl_easy_setopt(g->curl, CURLOPT_URL, url);
    curl_easy_setopt(g->curl, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(g->curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(g->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(g->curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(g->curl, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(g->curl, CURLOPT_TIMEOUT, 300L);
    CURLcode cc = curl_easy_perform(g->curl);
    long status = -1;
    if (cc == CURLE_OK)
        curl_easy_getinfo(g->curl, CURLINFO_RESPONSE_CODE, &status);
    else
        cli_errorf("ingest: %s: %s", url, curl_easy_strerror(cc));
    curl_slist_free_all(h);
    return status;
}

static const char *error_text(const buf *b)
{
    static char msg[512];
    json_t *v = json_loadb(b->data ? b->data : "", b->len, 0, NULL);
    json_t *m = json_object_get(json_object_get(v, "error"), "message");
    snprintf(msg, sizeof msg, "%s", json_is_string(m) ? json_string_value(m)
                                                       : (b->data ? b->data : "(empty)"));
    json_decref(v);
    return msg;
}

static void progress(const ingest *g)
{
    if (!g->is_tty)
        return;
    size_t w = 30, k = g->files_total ? g->files_done * w / g->files_total : w;
    char bar[31];
    for (size_t i = 0; i < w; i++)
        bar[i] = i < k ? '#' : ' ';
    bar[w] = 0;
    fprintf(stderr, "\r[%s] %zu/%zu files, %zu documents, %zu chunks", bar, g->files_done,
            g->files_total, g->n_docs, g->n_chunks);
    fflush(stderr);
}

/* Sends the batch; creates the collection on a 404 once. Returns 0, 1 (refused), -1 (fatal). */
static int flush(ingest *g)
{
    if (json_array_size(g->docs) == 0)
        return 0;
    json_t *req = json_pack("{s:O}", "documents", g->docs);
    char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    size_t nb = json_array_size(g->docs);
    json_array_clear(g->docs);
    g->batch_bytes = 0;
    if (!body)
        return -1;
    char path[600];
    snprintf(path, sizeof path, "/collections/%s/documents", g->coll);
    buf out;
    buf_init(&out, (size_t)64 << 20);
    long st = post(g, path, body, strlen(body), &out);
    if (st == 404 && !g->created) {
        json_t *c = json_pack("{s:s}", "name", g->coll);
        char *cb = json_dumps(c, JSON_COMPACT);
        json_decref(c);
        long cs = cb ? post(g, "/collections", cb, strlen(cb), &out) : -1;
        free(cb);
        if (cs != 201 && cs != 409) {
            cli_errorf("ingest: cannot create collection %s (HTTP %ld): %s", g->coll, cs,
                       error_text(&out));
            free(body);
            buf_deinit(&out);
            return -1;
        }
        g->created = true;
        st = post(g, path, body, strlen(body), &out);
    }
    free(body);
    int rc = 0;
    if (st == 200) {
        json_t *v = json_loadb(out.data, out.len, 0, NULL);
        json_t *data = json_object_get(v, "data");
        for (size_t i = 0; i < json_array_size(data); i++) {
            json_t *d = json_array_get(data, i);
            g->n_chunks += (size_t)json_integer_value(json_object_get(d, "chunks"));
            g->n_tokens += (size_t)json_integer_value(json_object_get(d, "tokens"));
        }
        g->n_docs += json_array_size(data);
        json_decref(v);
    } else if (st < 0) {
        rc = -1;
    } else {
        if (g->is_tty)
            fputc('\n', stderr);
        cli_errorf("ingest: the server refused a batch of %zu documents (HTTP %ld): %s", nb, st,
                   error_text(&out));
        g->n_failed += nb;
        rc = st >= 500 || st == 401 || st == 403 ? -1 : 1;
    }
    buf_deinit(&out);
    return rc;
}

/* Queues one document (text copied into the JSON). */
static int add_doc(ingest *g, const char *id, const char *text, size_t len, json_t *meta)
{
    json_t *d = json_pack("{s:s, s:s%}", "id", id, "text", text, len);
    if (!d) {
        cli_errorf("ingest: %s: the text is not valid UTF-8", id);
        json_decref(meta);
        return 1;
    }
    if (meta)
        json_object_set_new(d, "metadata", meta);
    json_array_append_new(g->docs, d);
    g->batch_bytes += len;
    if (json_array_size(g->docs) >= g->batch || g->batch_bytes >= INGEST_BATCH_BYTES)
        return flush(g);
    return 0;
}

/* ---------------------------------------------------------------- HTML */

static bool tag_is(const char *t, size_t n, const char *name)
{
    size_t k = strlen(name);
    return n >= k && strncasecmp(t, name, k) == 0 &&
           (n == k || t[k] == ' ' || t[k] == '>' || t[k] == '/' || t[k] == '\t' || t[k] == '\n');
}

static void put_cp(buf *o, unsigned long cp)
{
    char u[4];
    size_t n;
    if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        cp = 0xFFFD;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | cp >> 6), u[1] = (char)(0x80 | (cp & 63)), n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | cp >> 12), u[1] = (char)(0x80 | (cp >> 6 & 63)),
        u[2] = (char)(0x80 | (cp & 63)), n = 3;
    } else {
        u[0] = (char)(0xF0 | cp >> 18), u[1] = (char)(0x80 | (cp >> 12 & 63)),
        u[2] = (char)(0x80 | (cp >> 6 & 63)), u[3] = (char)(0x80 | (cp & 63)), n = 4;
    }
    (void)!buf_append(o, u, n);
}

/* Text of an HTML document into o (see the top comment). */
static void html_text(const char *s, size_t n, buf *o)
{
    static const char *const blocks[] = {"p", "div", "br", "li", "tr", "section", "article",
                                         "ul", "ol", "table", "blockquote", "pre", "hr",
                                         "title", "header", "footer"};
    size_t i = 0;
    while (i < n) {
        if (s[i] == '<') {
            size_t j = i + 1;
            while (j < n && s[j] != '>')
                j++;
            const char *t = s + i + 1;
            size_t tl = j - i - 1;
            bool closing = tl > 0 && t[0] == '/';
            const char *name = closing ? t + 1 : t;
            size_t nl = closing ? tl - 1 : tl;
            if (!closing && (tag_is(name, nl, "script") || tag_is(name, nl, "style"))) {
                const char *end = tag_is(name, nl, "script") ? "</script" : "</style";
                size_t k = j;
                while (k < n && strncasecmp(s + k, end, strlen(end)) != 0)
                    k++;
                while (k < n && s[k] != '>')
                    k++;
                i = k < n ? k + 1 : n;
                continue;
            }
            if (nl >= 2 && (name[0] == 'h' || name[0] == 'H') && name[1] >= '1' &&
                name[1] <= '6' && (nl == 2 || name[2] == ' ' || name[2] == '>')) {
                (void)!buf_append_str(o, "\n\n");
                if (!closing)
                    for (int k = 0; k < name[1] - '0'; k++)
                        (void)!buf_append_char(o, '#');
                (void)!buf_append_str(o, closing ? "" : " ");
            } else {
                for (size_t k = 0; k < ARRAY_LEN(blocks); k++)
                    if (tag_is(name, nl, blocks[k])) {
                        (void)!buf_append_str(o, "\n\n");
                        break;
                    }
            }
            i = j < n ? j + 1 : n;
        } else if (s[i] == '&') {
            size_t j = i + 1;
            while (j < n && j - i < 12 && s[j] != ';')
                j++;
            const char *ent = s + i + 1;
            size_t el = j - i - 1;
            static const struct {
                const char *n, *v;
            } E[] = {{"amp", "&"}, {"lt", "<"}, {"gt", ">"}, {"quot", "\""}, {"apos", "'"},
                     {"nbsp", " "}};
            bool done = false;
            if (j < n && s[j] == ';') {
                if (el > 1 && ent[0] == '#') {
                    char num[16];
                    bool hex = ent[1] == 'x' || ent[1] == 'X';
                    size_t nn = el - 1 - hex;
                    if (nn > 0 && nn < sizeof num) {
                        memcpy(num, ent + 1 + hex, nn);
                        num[nn] = 0;
                        char *endp;
                        unsigned long cp = strtoul(num, &endp, hex ? 16 : 10);
                        if (*endp == 0) {
                            put_cp(o, cp);
                            done = true;
                        }
                    }
                } else {
                    for (size_t k = 0; k < ARRAY_LEN(E) && !done; k++)
                        if (strlen(E[k].n) == el && memcmp(E[k].n, ent, el) == 0) {
                            (void)!buf_append_str(o, E[k].v);
                            done = true;
                        }
                }
            }
            if (done)
                i = j + 1;
            else
                (void)!buf_append_char(o, s[i++]);
        } else {
            // collapse whitespace runs (newlines in HTML source are not paragraph breaks)
            if (s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '\r') {
                if (o->len && o->data[o->len - 1] != ' ' && o->data[o->len - 1] != '\n')
                    (void)!buf_append_char(o, ' ');
                i++;
                continue;
            }
            (void)!buf_append_char(o, s[i++]);
        }
    }
}

/* ---------------------------------------------------------------- files */

static const char *ext_of(const char *p)
{
    const char *d = strrchr(p, '.'), *s = strrchr(p, '/');
    return d && (!s || d > s) ? d + 1 : "";
}

static bool wanted(const char *p)
{
    const char *e = ext_of(p);
    return strcasecmp(e, "txt") == 0 || strcasecmp(e, "md") == 0 ||
           strcasecmp(e, "markdown") == 0 || strcasecmp(e, "html") == 0 ||
           strcasecmp(e, "htm") == 0 || strcasecmp(e, "jsonl") == 0;
}

static int add_file(ingest *g, const char *p)
{
    if (g->nfiles >= INGEST_FILES_MAX)
        return ERR_TOO_LARGE;
    if (g->nfiles == g->capfiles) {
        size_t nc = g->capfiles ? g->capfiles * 2 : 64;
        char **nf = realloc(g->files, nc * sizeof *nf);
        if (!nf)
            return ERR_NOMEM;
        g->files = nf;
        g->capfiles = nc;
    }
    if (!(g->files[g->nfiles] = strdup(p)))
        return ERR_NOMEM;
    g->nfiles++;
    return 0;
}

static int walk_fn(const char *p, const struct stat *st, int type, struct FTW *f)
{
    (void)st;
    (void)f;
    if (type == FTW_F && wanted(p))
        return add_file(g_walk, p) == 0 ? 0 : 1;
    return 0;
}

static int read_all(const char *p, char **out, size_t *n)
{
    FILE *f = fopen(p, "rb");
    if (!f)
        return ERR_IO;
    buf b;
    buf_init(&b, INGEST_FILE_MAX);
    char tmp[65536];
    size_t k;
    int rc = 0;
    while (rc == 0 && (k = fread(tmp, 1, sizeof tmp, f)) > 0)
        rc = buf_append(&b, tmp, k);
    if (ferror(f) && rc == 0)
        rc = ERR_IO;
    fclose(f);
    if (rc) {
        buf_deinit(&b);
        return rc;
    }
    *n = b.len;
    *out = b.data ? buf_steal(&b) : strdup("");
    return *out ? 0 : ERR_NOMEM;
}

/* Reads and queues the documents of one file. Returns 0, 1 (bad input or refused), -1 fatal. */
static int ingest_file(ingest *g, const char *p)
{
    char *s;
    size_t n;
    int rc = read_all(p, &s, &n);
    if (rc) {
        cli_errorf("ingest: cannot read %s: %s", p, rc == ERR_TOO_LARGE ? "over 64 MiB"
                                                                       : strerror(errno));
        return 1;
    }
    const char *e = ext_of(p);
    int st = 0;
    if (strcasecmp(e, "jsonl") == 0) {
        size_t line = 0, i = 0;
        while (i < n && st >= 0) {
            size_t j = i;
            while (j < n && s[j] != '\n')
                j++;
            line++;
            json_error_t je;
            json_t *v = j > i ? json_loadb(s + i, j - i, 0, &je) : NULL;
            i = j + 1;
            if (!v && j == i - 1)
                continue; // empty line
            json_t *t = json_object_get(v, "text"), *id = json_object_get(v, "id"),
                   *m = json_object_get(v, "metadata");
            if (!json_is_string(t)) {
                cli_errorf("ingest: %s:%zu: expected an object with a \"text\" string", p, line);
                json_decref(v);
                st = 1;
                continue;
            }
            char idb[300];
            if (json_is_string(id))
                snprintf(idb, sizeof idb, "%s", json_string_value(id));
            else
                snprintf(idb, sizeof idb, "%s:%zu", p, line);
            int r = add_doc(g, idb, json_string_value(t), json_string_length(t),
                            json_is_object(m) ? json_incref(m) : NULL);
            st = r < 0 ? -1 : (r ? 1 : st);
            json_decref(v);
        }
    } else if (strcasecmp(e, "html") == 0 || strcasecmp(e, "htm") == 0) {
        buf o;
        buf_init(&o, INGEST_FILE_MAX);
        html_text(s, n, &o);
        st = add_doc(g, p, o.data ? o.data : "", o.len, NULL);
        buf_deinit(&o);
    } else {
        st = add_doc(g, p, s, n, NULL);
    }
    free(s);
    return st;
}

int cli_cmd_ingest(int argc, char **argv)
{
    ingest g = {0};
    g.batch = 32;
    int status = 2;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (a[0] == '-' && i + 1 >= argc) {
            cli_errorf("ingest: %s needs a value (see --help)", a);
            return 2;
        }
        if (strcmp(a, "--url") == 0)
            g.url = argv[++i];
        else if (strcmp(a, "--collection") == 0)
            g.coll = argv[++i];
        else if (strcmp(a, "--api-key") == 0)
            g.key = argv[++i];
        else if (strcmp(a, "--batch") == 0) {
            int64_t v;
            if (parse_i64(argv[++i], 1, 1000, &v) != 0) {
                cli_errorf("ingest: --batch %s is not in [1, 1000]", argv[i]);
                return 2;
            }
            g.batch = (size_t)v;
        } else if (a[0] == '-') {
            cli_errorf("ingest: unknown option %s (see --help)", a);
            return 2;
        }
    }
    if (!g.url || !g.coll) {
        cli_errorf("ingest: --url and --collection are required (see --help)");
        return 2;
    }
    if (!g.key)
        g.key = getenv("FERRY_API_KEY");
    g_walk = &g;
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-') {
            i++;
            continue;
        }
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            cli_errorf("ingest: %s: %s", argv[i], strerror(errno));
            goto out;
        }
        if (S_ISDIR(st.st_mode)) {
            if (nftw(argv[i], walk_fn, 16, FTW_PHYS) != 0) {
                cli_errorf("ingest: walking %s failed", argv[i]);
                goto out;
            }
        } else if (add_file(&g, argv[i]) != 0) {
            cli_errorf("ingest: too many files");
            goto out;
        }
    }
    if (g.nfiles == 0) {
        cli_errorf("ingest: no .txt, .md, .html or .jsonl files given");
        goto out;
    }
    g.files_total = g.nfiles;
    g.is_tty = isatty(2);
    g.docs = json_array();
    curl_global_init(CURL_GLOBAL_DEFAULT);
    g.curl = curl_easy_init();
    if (!g.docs || !g.curl) {
        cli_errorf("ingest: out of memory");
        status = 1;
        goto out;
    }
    uint64_t t0 = clock_mono_ns();
    int worst = 0;
    for (size_t i = 0; i < g.nfiles && worst >= 0; i++) {
        int r = ingest_file(&g, g.files[i]);
        worst = r < 0 ? -1 : MAX(worst, r);
        g.files_done = i + 1;
        progress(&g);
    }
    if (worst >= 0) {
        int r = flush(&g);
        worst = r < 0 ? -1 : MAX(worst, r);
    }
    progress(&g);
    if (g.is_tty)
        fputc('\n', stderr);
    double secs = (double)(clock_mono_ns() - t0) / 1e9;
    printf("ingested %zu documents (%zu chunks, %zu tokens) from %zu files into %s in %.2f s%s\n",
           g.n_docs, g.n_chunks, g.n_tokens, g.files_done, g.coll, secs,
           g.n_failed ? "; some documents were refused" : "");
    status = worst == 0 && g.n_failed == 0 ? 0 : worst == 1 && g.n_failed == 0 ? 2 : 1;
out:
    if (g.curl)
        curl_easy_cleanup(g.curl);
    json_decref(g.docs);
    for (size_t i = 0; i < g.nfiles; i++)
        free(g.files[i]);
    free(g.files);
    return status;
}

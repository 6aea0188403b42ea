/*
 * vector/hnsw_io — saving and loading an HNSW index, one file per index.
 *
 * File format (little-endian; n = node slots, live and tombstones):
 *
 *   offset  size  field
 *   0       8     magic "FERRYHNS"
 *   8       4     version (1)
 *   12      4     header bytes (80)
 *   16      4     dim
 *   20      4     metric (0 l2, 1 ip, 2 cosine)
 *   24      4     M
 *   28      4     ef_construction
 *   32      8     n
 *   40      8     tombstones
 *   48      4     entry point id (0xffffffff: empty index)
 *   52      4     max level
 *   56      8     seed
 *   64      8     level generator state
 *   72      8     upper words (uint32 words in the upper-levels section)
 *   80            labels     n * uint64
 *                 levels     n * uint8
 *                 deleted    n * uint8 (0 or 1)
 *                 vectors    n * dim * float32 (cosine: already normalized)
 *                 level 0    n * (1 + 2M) * uint32: count, then ids
 *                 upper      for each node with level L > 0, in node order,
 *                            L * (1 + M) uint32: per level 1..L a count, then ids
 *   end - 8 8     xxHash64 (seed 0) of every byte before it
 *
 * Saving writes "<path>.tmp", fsyncs it, renames it over path and fsyncs the
 * directory: a crash at any point leaves the previous file or the new one.
 * Loading checks the header, then that the file size equals the size the
 * header implies (checked arithmetic), then the checksum, then the graph.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "vector/vec_int.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the index file is little-endian");

#define HNSW_MAGIC "FERRYHNS"
#define HNSW_VERSION 1
#define HNSW_HEADER_BYTES 80
#define IO_BUF 65536

typedef struct file_header {
    char magic[8];
    uint32_t version, header_bytes, dim, metric, M, efc;
    uint64_t n, n_deleted;
    uint32_t entry, max_level;
    uint64_t seed, rng, upper_words;
} file_header;
_Static_assert(sizeof(file_header) == HNSW_HEADER_BYTES, "header layout");

/* ---------------------------------------------------------------- writing */

typedef struct writer {
    int fd;
    int err;  // errno of the first failure, 0 if none
    XXH64_state_t *h;
    size_t len;
    unsigned char buf[IO_BUF];
} writer;

static void w_flush(writer *w)
{
    size_t off = 0;
    while (off < w->len && !w->err) {
        ssize_t r = write(w->fd, w->buf + off, w->len - off);
        if (r < 0) {
            if (errno != EINTR)
                w->err = errno;
            continue;
        }
        off += (size_t)r;
    }
    w->len = 0;
}

static void w_put(writer *w, const void *p, size_t n)
{
    const unsigned char *c = p;
    XXH64_update(w->h, p, n);
    while (n && !w->err) {
        size_t take = MIN(n, IO_BUF - w->len);
        memcpy(w->buf + w->len, c, take);
        w->len += take;
        c += take;
        n -= take;
        if (w->len == IO_BUF)
            w_flush(w);
    }
}

static int fsync_dir(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (!slash) {
        dir[0] = '.';
        dir[1] = '\0';
    } else {
        size_t n = slash == path ? 1 : (size_t)(slash - path);
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    int rc = fsync(fd) ? errno : 0;
    close(fd);
    return rc;
}

static void write_body(hnsw_index *x, writer *w)
{
    uint32_t n = atomic_load(&x->n);
    uint64_t en = atomic_load(&x->entry), upper_words = 0;
    for (uint32_t i = 0; i < n; i++)
        upper_words += (uint64_t)x->levels[i] * (1 + x->M);
    file_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, HNSW_MAGIC, 8);
    h.version = HNSW_VERSION;
    h.header_bytes = HNSW_HEADER_BYTES;
    h.dim = (uint32_t)x->dim;
    h.metric = (uint32_t)x->metric;
    h.M = (uint32_t)x->M;
    h.efc = (uint32_t)x->efc;
    h.n = n;
    h.n_deleted = atomic_load(&x->n_deleted);
    h.entry = (uint32_t)(en >> 32);
    h.max_level = (uint32_t)(en & 0xffffffffu);
    h.seed = x->seed;
    h.rng = x->rng;
    h.upper_words = upper_words;
    w_put(w, &h, sizeof h);
    w_put(w, x->labels, (size_t)n * sizeof(uint64_t));
    w_put(w, x->levels, n);
    w_put(w, (const void *)x->deleted, n);
    for (uint32_t i = 0; i < n; i++)
        w_put(w, x->vecs + (size_t)i * x->row, x->dim * sizeof(float));
    w_put(w, (const void *)x->links0, (size_t)n * (1 + x->M0) * sizeof(uint32_t));
    for (uint32_t i = 0; i < n; i++)
        if (x->levels[i])
            w_put(w, (const void *)x->upper[i],
                  (size_t)x->levels[i] * (1 + x->M) * sizeof(uint32_t));
}

int hnsw_index_save(hnsw_index *x, const char *path, err_msg *e)
{
    char tmp[PATH_MAX];
    int n = snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (n < 0 || (size_t)n >= sizeof tmp)
        return err_set(e, ERR_INVAL, "hnsw: path \"%s\" is too long", path);
    writer *w = calloc(1, sizeof *w);
    XXH64_state_t *hs = XXH64_createState();
    if (!w || !hs) {
        free(w);
        XXH64_freeState(hs);
        return err_set(e, ERR_NOMEM, "hnsw: out of memory saving \"%s\"", path);
    }
    int rc = 0;
    const char *step = "open";
    w->h = hs;
    XXH64_reset(hs, 0);
    w->fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (w->fd < 0) {
        w->err = errno;
        goto fail;
    }
    pthread_mutex_lock(&x->write_mu);
    write_body(x, w);
    pthread_mutex_unlock(&x->write_mu);
    uint64_t sum = XXH64_digest(hs);
    step = "write";
    w_put(w, &sum, sizeof sum);
    w_flush(w);
    if (w->err)
        goto fail;
    step = "fsync";
    if (fsync(w->fd)) {
        w->err = errno;
        goto fail;
    }
    step = "close";
    if (close(w->fd)) {
        w->fd = -1;
        w->err = errno;
        goto fail;
    }
    w->fd = -1;
    step = "rename";
    if (rename(tmp, path)) {
        w->err = errno;
        goto fail;
    }
    /* The rename is durable only once the directory entry is. */
    int derr = fsync_dir(path);
    if (derr) {
        rc = err_set(e, ERR_IO, "hnsw: fsync of the directory of \"%s\": %s", path,
                     strerror(derr));
        goto out;
    }
    goto out;
fail:
    rc = err_set(e, ERR_IO, "hnsw: %s \"%s\": %s", step, tmp, strerror(w->err));
    if (w->fd >= 0)
        close(w->fd);
    unlink(tmp);
out:
    XXH64_freeState(hs);
    free(w);
    return rc;
}

/* ---------------------------------------------------------------- reading */

typedef struct reader {
    int fd;
    XXH64_state_t *h;
    size_t pos, len;
    unsigned char buf[IO_BUF];
} reader;

/* Reads exactly n bytes (and hashes them). Returns 0, or errno / -1 at EOF. */
static int r_get(reader *r, void *p, size_t n)
{
    unsigned char *c = p;
    size_t want = n;
    while (n) {
        if (r->pos == r->len) {
            ssize_t got = read(r->fd, r->buf, IO_BUF);
            if (got < 0) {
                if (errno == EINTR)
                    continue;
                return errno;
            }
            if (got == 0)
                return -1;
            r->pos = 0;
            r->len = (size_t)got;
        }
        size_t take = MIN(n, r->len - r->pos);
        memcpy(c, r->buf + r->pos, take);
        r->pos += take;
        c += take;
        n -= take;
    }
    XXH64_update(r->h, p, want);
    return 0;
}

/* Expected file size from the header, or false on overflow. */
static bool expected_size(const file_header *h, uint64_t *out)
{
    uint64_t per = 8 + 1 + 1, t, vec, l0, total;
    if (!u64_mul_ok(h->dim, 4, &vec) || !u64_add_ok(per, vec, &per))
        return false;
    if (!u64_mul_ok((uint64_t)h->M, 2, &l0) || !u64_add_ok(l0, 1, &l0) ||
        !u64_mul_ok(l0, 4, &l0) || !u64_add_ok(per, l0, &per))
        return false;
    if (!u64_mul_ok(h->n, per, &total) || !u64_mul_ok(h->upper_words, 4, &t) ||
        !u64_add_ok(total, t, &total) || !u64_add_ok(total, HNSW_HEADER_BYTES + 8, &total))
        return false;
    *out = total;
    return true;
}

static int check_header(const file_header *h, uint64_t fsize, const char *path, err_msg *e)
{
    if (memcmp(h->magic, HNSW_MAGIC, 8) != 0)
        return err_set(e, ERR_FORMAT, "hnsw: \"%s\" is not an index file (bad magic)", path);
    if (h->version != HNSW_VERSION)
        return err_set(e, h->version > HNSW_VERSION ? ERR_UNSUPPORTED : ERR_FORMAT,
                       "hnsw: \"%s\" has format version %u; this build reads %d", path,
                       h->version, HNSW_VERSION);
    if (h->header_bytes != HNSW_HEADER_BYTES)
        return err_set(e, ERR_FORMAT, "hnsw: \"%s\": header size %u, expected %d", path,
                       h->header_bytes, HNSW_HEADER_BYTES);
    if (h->dim == 0 || h->dim > VEC_DIM_MAX)
        return err_set(e, ERR_FORMAT, "hnsw: \"%s\": dim %u is outside 1..%d", path, h->dim,
                       VEC_DIM_MAX);
    if (h->metric > VEC_METRIC_COSINE)
        return err_set(e, ERR_FORMAT, "hnsw: \"%s\": unknown metric %u", path, h->metric);
    if (h->M < HNSW_M_MIN || h->M > HNSW_M_MAX)
        return err_set(e, ERR_FORMAT, "hnsw: \"%s\": M %u is outside %d..%d", path, h->M,
                       HNSW_M_MIN, HNSW_M_MAX);
    if (h->efc < h->M || h->efc > HNSW_EF_MAX)
        return err_set(e, ERR_FORMAT, "hnsw: \"%s\": ef_construction %u is outside %u..%d", path,
                       h->efc, h->M, HNSW_EF_MAX);
    if (h->n > HNSW_NODES_MAX)
        return err_set(e, ERR_FORMAT, "hnsw: \"%s\": %llu nodes is above %u", path,
                       (unsigned long long)h->n, HNSW_NODES_MAX);
    if (h->n_deleted > h->n)
        return err_set(e, ERR_FORMAT, "hnsw: \"%s\": %llu tombstones among %llu nodes", path,
                       (unsigned long long)h->n_deleted, (unsigned long long)h->n);
    if (h->max_level > HNSW_LEVEL_MAX)
        return err_set(e, ERR_FORMAT, "hnsw: \"%s\": max level %u is above %d", path,
                       h->max_level, HNSW_LEVEL_MAX);
    if (h->n == 0 ? h->entry != HNSW_EMPTY : h->entry >= h->n)
        return err_set(e, ERR_FORMAT, "hnsw: \"%s\": entry point %u with %llu nodes", path,
                       h->entry, (unsigned long long)h->n);
    uint64_t want;
    if (!expected_size(h, &want))
        return err_set(e, ERR_FORMAT, "hnsw: \"%s\": header sizes overflow", path);
    if (fsize < want)
        return err_set(e, ERR_FORMAT,
                       "hnsw: \"%s\" is truncated: %llu bytes, the header describes %llu", path,
                       (unsigned long long)fsize, (unsigned long long)want);
    if (fsize > want)
        return err_set(e, ERR_FORMAT,
                       "hnsw: \"%s\" has %llu bytes after the %llu the header describes", path,
                       (unsigned long long)(fsize - want), (unsigned long long)want);
    return 0;
}

/* Checks one list: count within cap, targets below n with level >= l. */
static int check_list(const hnsw_index *x, const _Atomic uint32_t *ll, size_t cap, uint32_t n,
                      uint32_t node, unsigned l, const char *path, err_msg *e)
{
    uint32_t c = ll[0];
    if (c > cap)
        return err_set(e, ERR_FORMAT, "hnsw: \"%s\": node %u level %u has %u links (max %zu)",
                       path, node, l, c, cap);
    for (uint32_t j = 0; j < c; j++) {
        uint32_t t = ll[1 + j];
        if (t >= n || x->levels[t] < l)
            return err_set(e, ERR_FORMAT, "hnsw: \"%s\": node %u level %u links to bad node %u",
                           path, node, l, t);
    }
    return 0;
}

static int read_body(hnsw_index *x, reader *r, const file_header *h, const char *path,
                     err_msg *e)
{
    uint32_t n = (uint32_t)h->n;
    int io = 0;
    if ((io = r_get(r, x->labels, (size_t)n * sizeof(uint64_t))) ||
        (io = r_get(r, x->levels, n)) || (io = r_get(r, (void *)x->deleted, n)))
        goto ioerr;
    uint64_t words = 0, deleted = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (x->levels[i] > h->max_level)
            return err_set(e, ERR_FORMAT, "hnsw: \"%s\": node %u has level %u above max %u",
                           path, i, x->levels[i], h->max_level);
        if (x->deleted[i] > 1)
            return err_set(e, ERR_FORMAT, "hnsw: \"%s\": node %u has deleted flag %u", path, i,
                           x->deleted[i]);
        deleted += x->deleted[i];
        words += (uint64_t)x->levels[i] * (1 + x->M);
    }
    if (deleted != h->n_deleted)
        return err_set(e, ERR_FORMAT, "hnsw: \"%s\": %llu tombstone flags, header says %llu",
                       path, (unsigned long long)deleted, (unsigned long long)h->n_deleted);
    if (words != h->upper_words)
        return err_set(e, ERR_FORMAT, "hnsw: \"%s\": levels need %llu link words, header says %llu",
                       path, (unsigned long long)words, (unsigned long long)h->upper_words);
    if (n && x->levels[h->entry] != h->max_level)
        return err_set(e, ERR_FORMAT, "hnsw: \"%s\": entry point %u has level %u, not %u", path,
                       h->entry, x->levels[h->entry], h->max_level);
    for (uint32_t i = 0; i < n; i++) {
        float *v = x->vecs + (size_t)i * x->row;
        if ((io = r_get(r, v, x->dim * sizeof(float))))
            goto ioerr;
        if (!vec_all_finite(v, x->dim))
            return err_set(e, ERR_FORMAT, "hnsw: \"%s\": vector of node %u is not finite", path,
                           i);
    }
    if ((io = r_get(r, (void *)x->links0, (size_t)n * (1 + x->M0) * sizeof(uint32_t))))
        goto ioerr;
    for (uint32_t i = 0; i < n; i++) {
        if (!x->levels[i])
            continue;
        size_t ub = (size_t)x->levels[i] * (1 + x->M) * sizeof(uint32_t);
        x->upper[i] = malloc(ub);
        if (!x->upper[i])
            return err_set(e, ERR_NOMEM, "hnsw: out of memory loading \"%s\"", path);
        x->upper_bytes += ub;
        if ((io = r_get(r, (void *)x->upper[i], ub)))
            goto ioerr;
    }
    uint64_t want = XXH64_digest(r->h), got;
    if ((io = r_get(r, &got, sizeof got)))
        goto ioerr;
    if (got != want)
        return err_set(e, ERR_FORMAT,
                       "hnsw: \"%s\" is damaged: checksum %016llx, contents hash to %016llx", path,
                       (unsigned long long)got, (unsigned long long)want);
    for (uint32_t i = 0; i < n; i++) {
        int rc = check_list(x, x->links0 + (size_t)i * (1 + x->M0), x->M0, n, i, 0, path, e);
        for (unsigned l = 1; rc == 0 && l <= x->levels[i]; l++)
            rc = check_list(x, x->upper[i] + (size_t)(l - 1) * (1 + x->M), x->M, n, i, l, path,
                            e);
        if (rc)
            return rc;
    }
    return 0;
ioerr:
    if (io < 0)
        return err_set(e, ERR_FORMAT, "hnsw: \"%s\" ended early (changed while reading?)", path);
    return err_set(e, ERR_IO, "hnsw: read \"%s\": %s", path, strerror(io));
}

int hnsw_index_load(const char *path, hnsw_index **out, err_msg *e)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return err_set(e, ERR_IO, "hnsw: open \"%s\": %s", path, strerror(errno));
    reader *r = calloc(1, sizeof *r);
    XXH64_state_t *hs = XXH64_createState();
    hnsw_index *x = NULL;
    int rc = 0;
    if (!r || !hs) {
        rc = err_set(e, ERR_NOMEM, "hnsw: out of memory loading \"%s\"", path);
        goto out;
    }
    r->fd = fd;
    r->h = hs;
    XXH64_reset(hs, 0);
    struct stat sb;
    if (fstat(fd, &sb)) {
        rc = err_set(e, ERR_IO, "hnsw: stat \"%s\": %s", path, strerror(errno));
        goto out;
    }
    uint64_t fsize = (uint64_t)sb.st_size;
    file_header h;
    if (fsize < sizeof h + 8) {
        rc = err_set(e, ERR_FORMAT, "hnsw: \"%s\" is truncated: %llu bytes, less than a header",
                     path, (unsigned long long)fsize);
        goto out;
    }
    int io = r_get(r, &h, sizeof h);
    if (io) {
        rc = err_set(e, io < 0 ? ERR_FORMAT : ERR_IO, "hnsw: read \"%s\": %s", path,
                     io < 0 ? "file ended early" : strerror(io));
        goto out;
    }
    rc = check_header(&h, fsize, path, e);
    if (rc)
        goto out;
    hnsw_config cfg = {.dim = h.dim,
                       .metric = (vec_metric)h.metric,
                       .M = h.M,
                       .ef_construction = h.efc,
                       .capacity = h.n > 16 ? h.n : 16,
                       .seed = h.seed};
    rc = hnsw_alloc(&cfg, &x, e);
    if (rc)
        goto out;
    x->rng = h.rng;
    rc = read_body(x, r, &h, path, e);
    if (rc)
        goto out;
    atomic_store(&x->n, (uint32_t)h.n);
    atomic_store(&x->n_deleted, h.n_deleted);
    atomic_store(&x->entry, hnsw_entry_pack(h.entry, h.max_level));
    rc = hnsw_rebuild_map(x, e);
    if (rc)
        goto out;
    *out = x;
    x = NULL;
out:
    if (x) {
        /* Nodes are not published yet: free the upper lists read so far by hand. */
        for (size_t i = 0; i < x->cap; i++) {
            free((void *)x->upper[i]);
            x->upper[i] = NULL;
        }
        hnsw_index_free(x);
    }
    XXH64_freeState(hs);
    free(r);
    close(fd);
    return rc;
}

/*
 * Fuzz harness for hnsw_index_load: the index file reader must refuse any
 * malformed file with an error, never crash or over-read. The harness rewrites
 * the trailing xxHash64 to match the body, so inputs get past the checksum and
 * exercise the header, size and graph validation (the checksum itself is
 * covered by the unit tests). A file that loads is searched once.
 */
// FUZZ_MODULES: base vector
// FUZZ_SECONDS: 10
// FUZZ_LIBS: libxxhash
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <xxhash.h>

#include "vector/vector.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 20))
        return 0;
    uint8_t *b = malloc(size + 1);
    if (!b)
        return 0;
    memcpy(b, data, size);
    if (size >= 16) {
        uint64_t sum = XXH64(b, size - 8, 0);
        memcpy(b + size - 8, &sum, 8);
    }
    int fd = memfd_create("hnsw", 0);
    if (fd < 0 || write(fd, b, size) != (ssize_t)size) {
        if (fd >= 0)
            close(fd);
        free(b);
        return 0;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    hnsw_index *x = NULL;
    err_msg e;
    if (hnsw_index_load(path, &x, &e) == 0) {
        hnsw_config c = hnsw_index_config(x);
        float *q = calloc(c.dim, sizeof *q);
        vec_hit hits[4];
        if (q) {
            q[0] = 1;
            int n = hnsw_index_search(x, q, 4, NULL, hits, &e);
            (void)n;
        }
        free(q);
        hnsw_index_free(x);
    }
    close(fd);
    free(b);
    return 0;
}

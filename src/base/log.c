/*
 * base/log — JSON-lines logger. State: the level (atomic), the destination fd
 * and path (under lock; the fd is swapped atomically so writers never block
 * on the lock), and the debug-module list (under lock, copied on set).
 */
#include "base/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/clock.h"

static _Atomic int g_level = LOG_LEVEL_INFO;
static _Atomic int g_fd = 2;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER; // guards g_path, g_debug_mods
static char g_path[1024];
static char g_debug_mods[256];
static _Atomic bool g_has_debug_mods = false;

int log_level_parse(const char *s, log_level *out)
{
    static const char *names[] = {"debug", "info", "warn", "error", "off"};
    for (int i = 0; i < 5; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = (log_level)i;
            return 0;
        }
    if (strcmp(s, "warning") == 0) {
        *out = LOG_LEVEL_WARN;
        return 0;
    }
    return ERR_INVAL;
}

const char *log_level_name(log_level l)
{
    static const char *names[] = {"debug", "info", "warn", "error", "off"};
    return (unsigned)l < 5 ? names[l] : "info";
}

void log_set_level(log_level l)
{
    atomic_store(&g_level, (int)l);
}

void log_set_debug_modules(const char *csv)
{
    pthread_mutex_lock(&g_lock);
    snprintf(g_debug_mods, sizeof g_debug_mods, "%s", csv ? csv : "");
    atomic_store(&g_has_debug_mods, g_debug_mods[0] != '\0');
    pthread_mutex_unlock(&g_lock);
}

static bool module_in_debug_list(const char *mod)
{
    bool found = false;
    size_t n = strlen(mod);
    pthread_mutex_lock(&g_lock);
    for (const char *p = g_debug_mods; *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && memcmp(p, mod, n) == 0) {
            found = true;
            break;
        }
        if (!end)
            break;
        p = end + 1;
    }
    pthread_mutex_unlock(&g_lock);
    return found;
}

bool log_enabled(log_level l, const char *mod)
{
    if ((int)l >= atomic_load(&g_level) && l != LOG_LEVEL_OFF)
        return true;
    if (l == LOG_LEVEL_DEBUG && mod && atomic_load(&g_has_debug_mods))
        return module_in_debug_list(mod);
    return false;
}

static int open_path(const char *path)
{
    return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
}

int log_open(const char *path, err_msg *e)
{
    if (!path || !*path || strcmp(path, "-") == 0 || strcmp(path, "stderr") == 0) {
        pthread_mutex_lock(&g_lock);
        g_path[0] = '\0';
        int old = atomic_exchange(&g_fd, 2);
        pthread_mutex_unlock(&g_lock);
        if (old > 2)
            close(old);
        return 0;
    }
    if (strlen(path) >= sizeof g_path)
        return err_set(e, ERR_INVAL, "log: path is longer than %zu bytes", sizeof g_path - 1);
    int fd = open_path(path);
    if (fd < 0)
        return err_set(e, ERR_IO, "log: cannot open \"%s\": %s", path, strerror(errno));
    pthread_mutex_lock(&g_lock);
    snprintf(g_path, sizeof g_path, "%s", path);
    int old = atomic_exchange(&g_fd, fd);
    pthread_mutex_unlock(&g_lock);
    if (old > 2)
        close(old);
    return 0;
}

int log_reopen(void)
{
    pthread_mutex_lock(&g_lock);
    if (!g_path[0]) {
        pthread_mutex_unlock(&g_lock);
        return 0;
    }
    int fd = open_path(g_path);
    if (fd < 0) {
        pthread_mutex_unlock(&g_lock);
        return ERR_IO;
    }
    /* Writers keep the descriptor number they loaded, so it is never closed
     * under them (a closed number can be reused by a socket, and a late line
     * would go there): dup2 points the same number at the new file, at once;
     * a write in progress finishes on the old file. */
    int cur = atomic_load(&g_fd);
    int rc = 0;
    if (cur > 2) {
        if (dup2(fd, cur) < 0)
            rc = ERR_IO;
        close(fd);
    } else {
        atomic_store(&g_fd, fd);
    }
    pthread_mutex_unlock(&g_lock);
    return rc;
}

static void emit(log_level l, const char *mod, const char *msg, size_t msg_len, const char *fields)
{
    buf b;
    buf_init(&b, 64 * 1024); // a line longer than this is dropped, not cut
    char ts[32];
    clock_rfc3339_ms(clock_wall_ns(), ts, sizeof ts);
    int rc = buf_printf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"mod\":\"", ts, log_level_name(l));
    if (!rc)
        rc = buf_append_json_str(&b, mod ? mod : "-", strlen(mod ? mod : "-"));
    if (!rc)
        rc = buf_append_str(&b, "\",\"msg\":\"");
    if (!rc)
        rc = buf_append_json_str(&b, msg, msg_len);
    if (!rc)
        rc = buf_append_char(&b, '"');
    if (!rc && fields && *fields) {
        rc = buf_append_char(&b, ',');
        if (!rc)
            rc = buf_append_str(&b, fields);
    }
    if (!rc)
        rc = buf_append_str(&b, "}\n");
    if (!rc) {
        int fd = atomic_load(&g_fd);
        ssize_t w = write(fd, b.data, b.len);
        (void)w;
    }
    buf_deinit(&b);
}

void log_write(log_level l, const char *mod, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1;
    emit(l, mod, msg, len, NULL);
}

void log_write_fields(log_level l, const char *mod, const char *msg, const char *fields)
{
    if (!log_enabled(l, mod))
        return;
    emit(l, mod, msg, strlen(msg), fields);
}

void log_write_line(const char *line, size_t n)
{
    int fd = atomic_load(&g_fd);
    ssize_t w = write(fd, line, n);
    (void)w;
}

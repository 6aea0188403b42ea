/* base/err — lookups into the ERR_MAP table and the err_msg helpers. */
#include "base/err.h"

#include <stdio.h>
#include <string.h>

typedef struct err_row {
    int code;
    const char *name;
    const char *msg;
    int status;
    const char *type;
} err_row;

static const err_row rows[] = {
#define ERR_ROW_(code, name, value, msg, status, type) {value, name, msg, status, type},
    ERR_MAP(ERR_ROW_)
#undef ERR_ROW_
};

static const err_row *find(int code)
{
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        if (rows[i].code == code)
            return &rows[i];
    return NULL;
}

const char *err_name(int code)
{
    const err_row *r = find(code);
    return r ? r->name : "unknown_error";
}

const char *err_str(int code)
{
    const err_row *r = find(code);
    return r ? r->msg : "unknown error";
}

int err_http_status(int code)
{
    const err_row *r = find(code);
    return r ? r->status : 500;
}

const char *err_openai_type(int code)
{
    const err_row *r = find(code);
    return r ? r->type : "server_error";
}

int err_setv(err_msg *e, int code, const char *fmt, va_list ap)
{
    if (!e)
        return code;
    e->code = code;
    int n = vsnprintf(e->text, sizeof e->text, fmt, ap);
    if (n >= (int)sizeof e->text) {
        /* Cut back to a UTF-8 boundary so the message stays valid text. */
        size_t end = sizeof e->text - 1;
        while (end > 0 && ((unsigned char)e->text[end] & 0xC0) == 0x80)
            end--;
        e->text[end] = '\0';
    }
    return code;
}

int err_set(err_msg *e, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    err_setv(e, code, fmt, ap);
    va_end(ap);
    return code;
}

void err_clear(err_msg *e)
{
    if (e) {
        e->code = 0;
        e->text[0] = '\0';
    }
}

const char *err_text(const err_msg *e, int code)
{
    if (e && e->text[0])
        return e->text;
    return err_str(code);
}

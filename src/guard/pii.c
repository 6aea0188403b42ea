/*
 * guard/pii — PII and secret detectors: one pass finds candidates, then
 * validators decide.
 *
 * The pass walks the original bytes once with a byte-class table and stops
 * only at word starts of digits and letters, at '@', '+', '(', ':' and at
 * "-----BEGIN". Each stop tries the few detectors that can start there and
 * then jumps past what it consumed, so every byte is looked at a bounded
 * number of times (each candidate reads at most a fixed window: 64 bytes of
 * e-mail local part, 253 of domain, 46 of IPv6, 256 of keys, ...).
 *
 * Validators reject look-alikes: card numbers need an issuer prefix, a length
 * that issuer uses and the Luhn digit; resident ids need a region, a real
 * birth date and the ISO 7064 MOD 11-2 digit; IBANs the country's length and
 * mod 97 == 1; phones the numbering plan's shape (China mobile 1[3-9] + 9
 * digits, landlines with area codes, NANP NPA/NXX rules, +CC with an
 * assigned country code). Dates, versions and order ids fail these.
 *
 * Custom patterns (PCRE2, JIT-compiled at load) run over the whole text.
 * Overlapping findings are resolved in favour of the longest.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "guard/guard_int.h"

/* ---- character helpers --------------------------------------------------- */

static inline bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}
static inline bool is_upper(unsigned char c)
{
    return c >= 'A' && c <= 'Z';
}
static inline bool is_lower(unsigned char c)
{
    return c >= 'a' && c <= 'z';
}
static inline bool is_alpha(unsigned char c)
{
    return is_upper(c) || is_lower(c);
}
static inline bool is_alnum(unsigned char c)
{
    return is_alpha(c) || is_digit(c);
}
static inline bool is_hex(unsigned char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
static inline bool is_b64url(unsigned char c)
{
    return is_alnum(c) || c == '-' || c == '_';
}

/* ---- validators -------------------------------------------------------- */

bool guard_luhn_ok(const char *d, size_t n)
{
    if (n < 2)
        return false;
    unsigned sum = 0;
    bool dbl = false;
    for (size_t i = n; i-- > 0;) {
        if (!is_digit((unsigned char)d[i]))
            return false;
        unsigned v = (unsigned)(d[i] - '0');
        if (dbl) {
            v *= 2;
            if (v > 9)
                v -= 9;
        }
        sum += v;
        dbl = !dbl;
    }
    return sum % 10 == 0;
}

static unsigned prefix_num(const char *d, size_t k)
{
    unsigned v = 0;
    for (size_t i = 0; i < k; i++)
        v = v * 10 + (unsigned)(d[i] - '0');
    return v;
}

bool guard_card_ok(const char *d, size_t n)
{
    if (n < 12 || n > 19)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_digit((unsigned char)d[i]))
            return false;
    unsigned p1 = prefix_num(d, 1), p2 = prefix_num(d, 2), p3 = prefix_num(d, 3),
             p4 = prefix_num(d, 4);
    bool issuer = false;
    if (p1 == 4) // Visa
        issuer = n == 13 || n == 16 || n == 19;
    else if ((p2 >= 51 && p2 <= 55) || (p4 >= 2221 && p4 <= 2720)) // Mastercard
        issuer = n == 16;
    else if (p2 == 34 || p2 == 37) // American Express
        issuer = n == 15;
    else if (p2 == 62) // UnionPay
        issuer = n >= 16 && n <= 19;
    else if (p4 == 6011 || (p3 >= 644 && p3 <= 649) || p2 == 65) // Discover
        issuer = n >= 16 && n <= 19;
    else if (p4 >= 3528 && p4 <= 3589) // JCB
        issuer = n >= 16 && n <= 19;
    else if ((p3 >= 300 && p3 <= 305) || p2 == 36 || p2 == 38 || p2 == 39) // Diners
        issuer = n >= 14 && n <= 19;
    else if (p4 == 5018 || p4 == 5020 || p4 == 5038 || p4 == 5893 || p4 == 6304 ||
             p4 == 6759 || (p4 >= 6761 && p4 <= 6763)) // Maestro
        issuer = n >= 12 && n <= 19;
    return issuer && guard_luhn_ok(d, n);
}

static bool leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int year_now(void)
{
    time_t t = time(NULL);
    struct tm tm;
    if (!gmtime_r(&t, &tm))
        return 2100;
    return tm.tm_year + 1900;
}

bool guard_cn_id_ok(const char *s, size_t n)
{
    static const int w[17] = {7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2};
    static const char chk[11] = {'1', '0', 'X', '9', '8', '7', '6', '5', '4', '3', '2'};
    if (n != 18)
        return false;
    for (size_t i = 0; i < 17; i++)
        if (!is_digit((unsigned char)s[i]))
            return false;
    char last = s[17] == 'x' ? 'X' : s[17];
    if (!is_digit((unsigned char)last) && last != 'X')
        return false;
    // Province-level region codes (GB/T 2260): 11-15, 21-23, 31-37, 41-46, 50-54, 61-65, 71, 81, 82.
    unsigned r = prefix_num(s, 2);
    bool region = (r >= 11 && r <= 15) || (r >= 21 && r <= 23) || (r >= 31 && r <= 37) ||
                  (r >= 41 && r <= 46) || (r >= 50 && r <= 54) || (r >= 61 && r <= 65) ||
                  r == 71 || r == 81 || r == 82;
    if (!region)
        return false;
    int y = (int)prefix_num(s + 6, 4), m = (int)prefix_num(s + 10, 2),
        d = (int)prefix_num(s + 12, 2);
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1900 || y > year_now() || m < 1 || m > 12 || d < 1)
        return false;
    if (d > mdays[m - 1] + (m == 2 && leap(y) ? 1 : 0))
        return false;
    int sum = 0;
    for (size_t i = 0; i < 17; i++)
        sum += (s[i] - '0') * w[i];
    return chk[sum % 11] == last;
}

/* IBAN lengths per country (SWIFT IBAN registry). */
static const struct {
    char cc[3];
    uint8_t len;
} iban_len[] = {
    {"AD", 24}, {"AE", 23}, {"AL", 28}, {"AT", 20}, {"AZ", 28}, {"BA", 20}, {"BE", 16},
    {"BG", 22}, {"BH", 22}, {"BR", 29}, {"BY", 28}, {"CH", 21}, {"CR", 22}, {"CY", 28},
    {"CZ", 24}, {"DE", 22}, {"DK", 18}, {"DO", 28}, {"EE", 20}, {"EG", 29}, {"ES", 24},
    {"FI", 18}, {"FO", 18}, {"FR", 27}, {"GB", 22}, {"GE", 22}, {"GI", 23}, {"GL", 18},
    {"GR", 27}, {"GT", 28}, {"HR", 21}, {"HU", 28}, {"IE", 22}, {"IL", 23}, {"IQ", 23},
    {"IS", 26}, {"IT", 27}, {"JO", 30}, {"KW", 30}, {"KZ", 20}, {"LB", 28}, {"LC", 32},
    {"LI", 21}, {"LT", 20}, {"LU", 20}, {"LV", 21}, {"LY", 25}, {"MC", 27}, {"MD", 24},
    {"ME", 22}, {"MK", 19}, {"MR", 27}, {"MT", 31}, {"MU", 30}, {"NL", 18}, {"NO", 15},
    {"PK", 24}, {"PL", 28}, {"PS", 29}, {"PT", 25}, {"QA", 29}, {"RO", 24}, {"RS", 22},
    {"SA", 24}, {"SC", 31}, {"SD", 18}, {"SE", 24}, {"SI", 19}, {"SK", 24}, {"SM", 27},
    {"ST", 25}, {"SV", 28}, {"TL", 23}, {"TN", 24}, {"TR", 26}, {"UA", 29}, {"VA", 22},
    {"VG", 24}, {"XK", 20},
};

static size_t iban_country_len(const unsigned char *s)
{
    for (size_t i = 0; i < ARRAY_LEN(iban_len); i++)
        if (iban_len[i].cc[0] == s[0] && iban_len[i].cc[1] == s[1])
            return iban_len[i].len;
    return 0;
}

bool guard_iban_ok(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    if (n < 15 || n > 34 || !is_upper(u[0]) || !is_upper(u[1]) || !is_digit(u[2]) ||
        !is_digit(u[3]))
        return false;
    if (iban_country_len(u) != n)
        return false;
    unsigned rem = 0;
    for (size_t k = 0; k < n; k++) {
        unsigned char c = u[(k + 4) % n]; // first four characters move to the end
        if (is_digit(c))
            rem = (rem * 10 + (unsigned)(c - '0')) % 97;
        else if (is_upper(c))
            rem = (rem * 100 + (unsigned)(c - 'A' + 10)) % 97;
        else
            return false;
    }
    return rem == 1;
}

bool guard_ipv4_ok(const char *s, size_t n)
{
    size_t i = 0;
    for (int part = 0; part < 4; part++) {
        if (part > 0) {
            if (i >= n || s[i] != '.')
                return false;
            i++;
        }
        size_t st = i;
        unsigned v = 0;
        while (i < n && is_digit((unsigned char)s[i]) && i - st < 3)
            v = v * 10 + (unsigned)(s[i++] - '0');
        if (i == st || v > 255 || (i - st > 1 && s[st] == '0'))
            return false;
        if (i < n && is_digit((unsigned char)s[i]))
            return false;
    }
    return i == n;
}

bool guard_ipv6_ok(const char *s, size_t n)
{
    char tmp[64];
    struct in6_addr a;
    if (n < 2 || n > 45)
        return false;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    return inet_pton(AF_INET6, tmp, &a) == 1;
}

/* ---- the candidate pass ------------------------------------------------- */

typedef struct scan {
    const guard_policy *p;
    guard_scratch *s;
    const unsigned char *t;
    size_t len;
    int rc;
} scan;

static bool on(const scan *c, guard_type t)
{
    return c->p->act[t] != GUARD_OFF;
}

static void add(scan *c, guard_type type, size_t start, size_t end)
{
    if (c->rc || !on(c, type))
        return;
    c->rc = scratch_push(c->s, false, (guard_span){start, end, type, 0});
}

/* End of the run of [0-9A-Za-z._-] from i: where a failed number skips to. */
static size_t skip_token(const scan *c, size_t i)
{
    while (i < c->len && (is_alnum(c->t[i]) || c->t[i] == '.' || c->t[i] == '-' || c->t[i] == '_'))
        i++;
    return i;
}

/* True when a number ending at e is really over (not "1.2" or "12a"). */
static bool num_end_ok(const scan *c, size_t e)
{
    if (e >= c->len)
        return true;
    unsigned char x = c->t[e];
    if (is_alnum(x) || x == '@' || x == '_')
        return false;
    if ((x == '.' || x == '-' || x == ':' || x == '/') && e + 1 < c->len && is_alnum(c->t[e + 1]))
        return false;
    return true;
}

static size_t try_ipv6_run(scan *c, size_t i)
{
    size_t j = i, colons = 0, digits = 0;
    while (j < c->len && j - i <= 46 && (is_hex(c->t[j]) || c->t[j] == ':' || c->t[j] == '.')) {
        colons += c->t[j] == ':';
        digits += is_digit(c->t[j]);
        j++;
    }
    while (j > i && c->t[j - 1] == '.')
        j--;
    if (colons < 2 || digits == 0 || j - i > 45)
        return 0;
    if (j < c->len && (is_alnum(c->t[j]) || c->t[j] == '_'))
        return 0;
    if (!guard_ipv6_ok((const char *)c->t + i, j - i))
        return 0;
    add(c, GUARD_T_IPV6, i, j);
    return j;
}

static bool nanp_ok(const char *d) // 10 digits
{
    if (d[0] < '2' || d[3] < '2')
        return false;
    if (d[1] == '9') // N9X area codes are reserved
        return false;
    if (d[1] == '1' && d[2] == '1') // N11 service codes
        return false;
    if (d[4] == '1' && d[5] == '1')
        return false;
    if (d[3] == '5' && d[4] == '5' && d[5] == '5' && d[6] == '0' && d[7] == '1')
        return false; // 555-01XX is reserved for fiction
    return true;
}

static bool china_mobile(const char *d, size_t n)
{
    return n == 11 && d[0] == '1' && d[1] >= '3' && d[1] <= '9';
}

/* Landline without the trunk 0: area code (10, 2X, or 3 digits) + 7-8 digits. */
static bool china_landline_intl(const char *d, size_t n)
{
    if (n < 9 || n > 11 || d[0] == '0')
        return false;
    size_t area = (d[0] == '1' || d[0] == '2') ? 2 : 3;
    if (d[0] == '1' && d[1] != '0')
        return false;
    size_t sub = n - area;
    return (sub == 7 || sub == 8) && d[area] >= '2';
}

static bool cc_ok(const char *d, size_t n, size_t *cc_len)
{
    if (n < 1)
        return false;
    if (d[0] == '1' || d[0] == '7') {
        *cc_len = 1;
        return true;
    }
    if (n < 3)
        return false;
    static const unsigned two[] = {20, 27, 30, 31, 32, 33, 34, 36, 39, 40, 41, 43, 44, 45, 46,
                                   47, 48, 49, 51, 52, 53, 54, 55, 56, 57, 58, 60, 61, 62, 63,
                                   64, 65, 66, 81, 82, 84, 86, 90, 91, 92, 93, 94, 95, 98};
    static const unsigned three[] = {21, 22, 23, 24, 25, 26, 29, 35, 37, 38, 42,
                                     50, 59, 67, 68, 69, 85, 87, 88, 96, 97, 99};
    unsigned p2 = prefix_num(d, 2);
    for (size_t i = 0; i < ARRAY_LEN(two); i++)
        if (two[i] == p2) {
            *cc_len = 2;
            return true;
        }
    for (size_t i = 0; i < ARRAY_LEN(three); i++)
        if (three[i] == p2) {
            *cc_len = 3;
            return true;
        }
    return false;
}

/* Phone numbers at i ('+', '(' or a digit). Returns the end, or 0. */
static size_t try_phone(scan *c, size_t i)
{
    const unsigned char *t = c->t;
    size_t j = i;
    bool plus = false, paren = false;
    if (t[j] == '+') {
        plus = true;
        j++;
    }
    char d[24];
    size_t nd = 0, g[10], ng = 0, last_end = 0;
    while (j < c->len) {
        if (t[j] == '(') {
            if (paren)
                return 0;
            paren = true;
            j++;
            continue;
        }
        if (!is_digit(t[j]))
            return 0;
        size_t st = j;
        while (j < c->len && is_digit(t[j])) {
            if (nd >= 20)
                return 0;
            d[nd++] = (char)t[j++];
        }
        if (ng >= 10)
            return 0;
        g[ng++] = j - st;
        last_end = j;
        // Separators: at most two of " -.)" (") " is common), then a digit or '('.
        size_t k = j, nsep = 0;
        while (k < c->len && nsep < 2 &&
               (t[k] == ' ' || t[k] == '-' || t[k] == '.' || t[k] == ')' || t[k] == '(')) {
            if (t[k] == '(' && (k + 1 >= c->len || !is_digit(t[k + 1])))
                break;
            k++, nsep++;
        }
        if (nsep == 0 || k >= c->len || !(is_digit(t[k]) || t[k] == '('))
            break;
        j = k; // a '(' here is taken by the next turn
    }
    if (!num_end_ok(c, last_end))
        return 0;
    d[nd] = '\0';
    bool ok = false;
    if (!plus && nd >= 4 && d[0] == '0' && d[1] == '0' && g[0] >= 4) {
        // 00 international prefix: "0086 138 ...".
        memmove(d, d + 2, nd - 1);
        nd -= 2;
        g[0] -= 2;
        plus = true;
    }
    if (plus) {
        size_t ccl = 0;
        if (nd >= 2 && d[0] == '8' && d[1] == '6')
            ok = china_mobile(d + 2, nd - 2) || china_landline_intl(d + 2, nd - 2);
        else if (d[0] == '1')
            ok = nd == 11 && nanp_ok(d + 1);
        else if (cc_ok(d, nd, &ccl))
            ok = nd >= 8 && nd <= 15 && nd - ccl >= 6;
    } else if (china_mobile(d, nd)) {
        ok = (ng == 1) || (ng == 3 && g[0] == 3 && g[1] == 4 && g[2] == 4) ||
             (ng == 2 && g[0] == 3 && g[1] == 8);
    } else if (nd == 10 && ng == 3 && g[0] == 3 && g[1] == 3 && g[2] == 4) {
        ok = nanp_ok(d);
    } else if (nd == 11 && ng == 4 && d[0] == '1' && g[0] == 1 && g[1] == 3 && g[2] == 3) {
        ok = nanp_ok(d + 1);
    } else if (d[0] == '0' && ng == 2 && (g[0] == 3 || g[0] == 4) &&
               (g[1] == 7 || g[1] == 8)) {
        bool area = g[0] == 3 ? (d[1] == '1' ? d[2] == '0' : d[1] == '2')
                              : (d[1] >= '3' && d[1] <= '9');
        ok = area && d[g[0]] >= '2';
    }
    if (!ok)
        return 0;
    add(c, GUARD_T_PHONE, i, last_end);
    return last_end;
}

/* Digits with optional single ' ' or '-' separators: a card number. */
static size_t try_card(scan *c, size_t i)
{
    const unsigned char *t = c->t;
    char d[20];
    size_t nd = 0, j = i, end = i, ng = 0;
    unsigned char sep = 0;
    bool short_group = false;
    while (j < c->len && is_digit(t[j])) {
        size_t st = j;
        while (j < c->len && is_digit(t[j])) {
            if (nd >= 19)
                return 0;
            d[nd++] = (char)t[j++];
        }
        ng++;
        if (j - st < 3)
            short_group = true;
        end = j;
        if (j + 1 < c->len && (t[j] == ' ' || t[j] == '-') && is_digit(t[j + 1])) {
            if (sep && t[j] != sep)
                break;
            sep = t[j];
            j++;
        } else {
            break;
        }
    }
    if (nd < 12 || (ng > 1 && short_group) || !num_end_ok(c, end))
        return 0;
    if (!guard_card_ok(d, nd))
        return 0;
    add(c, GUARD_T_CREDIT_CARD, i, end);
    return end;
}

static size_t try_number(scan *c, size_t i)
{
    const unsigned char *t = c->t;
    size_t e;
    if (on(c, GUARD_T_IPV6) && (e = try_ipv6_run(c, i)) != 0)
        return e;
    // IPv4: four dotted octets, not part of a longer dotted run ("1.2.3.4.5").
    if (on(c, GUARD_T_IPV4)) {
        size_t j = i;
        while (j < c->len && j - i < 16 && (is_digit(t[j]) || t[j] == '.'))
            j++;
        while (j > i && t[j - 1] == '.')
            j--;
        bool more = j < c->len && t[j] == '.' && j + 1 < c->len && is_digit(t[j + 1]);
        if (!more && num_end_ok(c, j) && guard_ipv4_ok((const char *)t + i, j - i)) {
            add(c, GUARD_T_IPV4, i, j);
            return j;
        }
    }
    if (on(c, GUARD_T_CN_ID) && i + 18 <= c->len) {
        if (guard_cn_id_ok((const char *)t + i, 18) && num_end_ok(c, i + 18)) {
            add(c, GUARD_T_CN_ID, i, i + 18);
            return i + 18;
        }
    }
    if (on(c, GUARD_T_CREDIT_CARD) && (e = try_card(c, i)) != 0)
        return e;
    if (on(c, GUARD_T_PHONE) && (e = try_phone(c, i)) != 0)
        return e;
    return 0;
}

static size_t body_end(const scan *c, size_t i, size_t max, bool underscore_dash)
{
    size_t j = i;
    while (j < c->len && j - i < max &&
           (is_alnum(c->t[j]) || (underscore_dash && (c->t[j] == '-' || c->t[j] == '_'))))
        j++;
    return j;
}

static bool starts(const scan *c, size_t i, const char *lit)
{
    size_t n = strlen(lit);
    return i + n <= c->len && memcmp(c->t + i, lit, n) == 0;
}

/* Mixed enough to be a generated key, not prose like "sk-learn-is-great". */
static bool key_like(const unsigned char *p, size_t n)
{
    size_t lo = 0, up = 0, dg = 0;
    for (size_t k = 0; k < n; k++) {
        lo += is_lower(p[k]);
        up += is_upper(p[k]);
        dg += is_digit(p[k]);
    }
    return dg >= 2 && (lo + up) >= 8 && ((lo && up) || n >= 32);
}

static int b64val(unsigned char c)
{
    if (is_upper(c))
        return c - 'A';
    if (is_lower(c))
        return c - 'a' + 26;
    if (is_digit(c))
        return c - '0' + 52;
    if (c == '-' || c == '+')
        return 62;
    if (c == '_' || c == '/')
        return 63;
    return -1;
}

/* JWT header: base64url of a JSON object naming "alg". */
static bool jwt_header_ok(const unsigned char *p, size_t n)
{
    char out[200];
    size_t w = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t k = 0; k < n && w < sizeof out - 1; k++) {
        int v = b64val(p[k]);
        if (v < 0)
            return false;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[w++] = (char)((acc >> bits) & 0xFF);
        }
    }
    out[w] = '\0';
    return w > 0 && out[0] == '{' && strstr(out, "\"alg\"") != NULL;
}

static const char *const aws_prefixes[] = {"AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA",
                                           "AIPA", "ANPA", "ANVA", "APKA", "AROA", "ASCA"};

/* Letter-initial candidates at a word start. Returns the end consumed, or 0. */
static size_t try_word(scan *c, size_t i)
{
    const unsigned char *t = c->t;
    size_t j;
    if (on(c, GUARD_T_API_KEY)) {
        if (starts(c, i, "sk-")) {
            j = body_end(c, i + 3, 257, true);
            if (j - i - 3 >= 20 && j - i - 3 <= 256 && num_end_ok(c, j) &&
                key_like(t + i + 3, j - i - 3)) {
                add(c, GUARD_T_API_KEY, i, j);
                return j;
            }
        }
        if (starts(c, i, "sk_live_") || starts(c, i, "sk_test_") || starts(c, i, "rk_live_")) {
            j = body_end(c, i + 8, 257, false);
            if (j - i - 8 >= 16 && num_end_ok(c, j) && key_like(t + i + 8, j - i - 8)) {
                add(c, GUARD_T_API_KEY, i, j);
                return j;
            }
        }
        if (t[i] == 'A' && i + 20 <= c->len) {
            for (size_t k = 0; k < ARRAY_LEN(aws_prefixes); k++) {
                if (memcmp(t + i, aws_prefixes[k], 4) != 0)
                    continue;
                size_t n = 0;
                while (n < 16 && (is_upper(t[i + 4 + n]) || is_digit(t[i + 4 + n])))
                    n++;
                if (n == 16 && num_end_ok(c, i + 20)) {
                    add(c, GUARD_T_API_KEY, i, i + 20);
                    return i + 20;
                }
            }
        }
        if (t[i] == 'g' && i + 4 < c->len && t[i + 1] == 'h' && t[i + 2] &&
            strchr("pousr", t[i + 2]) && t[i + 3] == '_') {
            j = body_end(c, i + 4, 252, false);
            if (j - i - 4 >= 36 && num_end_ok(c, j)) {
                add(c, GUARD_T_API_KEY, i, j);
                return j;
            }
        }
        if (starts(c, i, "github_pat_")) {
            j = body_end(c, i + 11, 256, true);
            if (j - i - 11 >= 22 && num_end_ok(c, j)) {
                add(c, GUARD_T_API_KEY, i, j);
                return j;
            }
        }
        if (starts(c, i, "eyJ")) {
            size_t a = body_end(c, i, 4096, true);
            if (a < c->len && t[a] == '.' && a - i >= 10) {
                size_t b = body_end(c, a + 1, 8192, true);
                if (b - a - 1 >= 4 && b < c->len && t[b] == '.') {
                    size_t e = body_end(c, b + 1, 4096, true);
                    if (num_end_ok(c, e) && jwt_header_ok(t + i, MIN(a - i, (size_t)264))) {
                        add(c, GUARD_T_API_KEY, i, e);
                        return e;
                    }
                }
            }
        }
    }
    if (on(c, GUARD_T_IBAN) && i + 15 <= c->len && is_upper(t[i]) && is_upper(t[i + 1]) &&
        is_digit(t[i + 2]) && is_digit(t[i + 3])) {
        size_t want = iban_country_len(t + i);
        if (want) {
            char v[40];
            size_t n = 0;
            j = i;
            while (j < c->len && n < want) {
                if (is_upper(t[j]) || is_digit(t[j])) {
                    v[n++] = (char)t[j++];
                } else if (t[j] == ' ' && n % 4 == 0 && j + 1 < c->len && is_alnum(t[j + 1])) {
                    j++;
                } else {
                    break;
                }
            }
            if (n == want && num_end_ok(c, j) && guard_iban_ok(v, n)) {
                add(c, GUARD_T_IBAN, i, j);
                return j;
            }
        }
    }
    if (on(c, GUARD_T_IPV6) && is_hex(t[i])) {
        size_t e = try_ipv6_run(c, i);
        if (e)
            return e;
    }
    return 0;
}

/* e-mail around the '@' at a. Returns the end, or 0. */
static size_t try_email(scan *c, size_t a)
{
    const unsigned char *t = c->t;
    size_t k = a;
    while (k > 0 && a - k < 64 &&
           (is_alnum(t[k - 1]) || t[k - 1] == '.' || t[k - 1] == '_' || t[k - 1] == '%' ||
            t[k - 1] == '+' || t[k - 1] == '-'))
        k--;
    if (k > 0 && a - k == 64 && is_alnum(t[k - 1]))
        return 0;
    while (k < a && (t[k] == '.' || t[k] == '-' || t[k] == '+'))
        k++;
    if (k == a || t[a - 1] == '.')
        return 0;
    for (size_t x = k; x + 1 < a; x++)
        if (t[x] == '.' && t[x + 1] == '.')
            return 0;
    size_t j = a + 1, labels = 0, last_start = j;
    while (j < c->len && j - a <= 253) {
        size_t st = j;
        while (j < c->len && (is_alnum(t[j]) || t[j] == '-') && j - st < 64)
            j++;
        if (j == st || t[st] == '-' || t[j - 1] == '-' || j - st > 63)
            return 0;
        labels++;
        last_start = st;
        if (j + 1 < c->len && t[j] == '.' && is_alnum(t[j + 1]))
            j++;
        else
            break;
    }
    if (labels < 2)
        return 0;
    if (j < c->len && (t[j] == '@' || t[j] == '_'))
        return 0;
    for (size_t x = last_start; x < j; x++)
        if (!is_alpha(t[x]))
            return 0;
    if (j - last_start < 2)
        return 0;
    add(c, GUARD_T_EMAIL, k, j);
    return j;
}

/* PEM private key: to its END line, or to the end of the text when unfinished
 * (a stream holds it back until the END line arrives). */
static size_t try_pem(scan *c, size_t i)
{
    const unsigned char *t = c->t;
    if (!starts(c, i, "-----BEGIN "))
        return 0;
    size_t j = i + 11, st = j;
    while (j < c->len && j - st < 48 && (is_upper(t[j]) || is_digit(t[j]) || t[j] == ' '))
        j++;
    if (!starts(c, j, "-----"))
        return 0;
    size_t lab = j - st;
    bool priv = (lab >= 11 && memcmp(t + j - 11, "PRIVATE KEY", 11) == 0) ||
                (lab >= 17 && memcmp(t + j - 17, "PRIVATE KEY BLOCK", 17) == 0);
    if (!priv)
        return j + 5;
    const unsigned char *end =
        memmem(t + j + 5, c->len - j - 5, "-----END ", 9);
    size_t e = c->len;
    if (end) {
        size_t x = (size_t)(end - t) + 9;
        while (x < c->len && x - (size_t)(end - t) < 64 && (is_upper(t[x]) || t[x] == ' '))
            x++;
        if (starts(c, x, "-----"))
            e = x + 5;
    }
    add(c, GUARD_T_PRIVATE_KEY, i, e);
    return e;
}

static int custom_scan(const guard_policy *p, guard_scratch *s, const char *text, size_t len)
{
    for (size_t k = 0; k < p->n_custom; k++) {
        const guard_custom *cu = &p->custom[k];
        if (cu->action == GUARD_OFF)
            continue;
        if (!s->md) {
            s->md = pcre2_match_data_create(1, NULL);
            if (!s->md)
                return ERR_NOMEM;
        }
        size_t off = 0;
        while (off <= len) {
            int rc = pcre2_match(cu->re, (PCRE2_SPTR)text, len, off, 0, s->md, NULL);
            if (rc < 0)
                break; // no match, or a match limit: stop this pattern
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(s->md);
            size_t a = ov[0], b = ov[1];
            if (b > a) {
                rc = scratch_push(s, false, (guard_span){a, b, GUARD_T_CUSTOM, (uint32_t)k});
                if (rc)
                    return rc;
                off = b;
            } else {
                off = b + 1; // empty match: step one code unit (invalid UTF is allowed)
                while (off < len && ((unsigned char)text[off] & 0xC0) == 0x80)
                    off++;
            }
        }
    }
    return 0;
}

static int span_cmp(const void *a, const void *b)
{
    const guard_span *x = a, *y = b;
    if (x->start != y->start)
        return x->start < y->start ? -1 : 1;
    size_t lx = x->end - x->start, ly = y->end - y->start;
    if (lx != ly)
        return lx > ly ? -1 : 1;
    return (int)x->type - (int)y->type;
}

/* Sorts by start and keeps, of overlapping spans, the longest. */
static void resolve_overlaps(guard_scratch *s)
{
    if (s->n_ents < 2)
        return;
    qsort(s->ents, s->n_ents, sizeof *s->ents, span_cmp);
    size_t w = 0;
    for (size_t r = 0; r < s->n_ents; r++) {
        guard_span sp = s->ents[r];
        if (w > 0 && sp.start < s->ents[w - 1].end) {
            guard_span *k = &s->ents[w - 1];
            if (sp.end - sp.start > k->end - k->start)
                *k = sp;
            continue;
        }
        s->ents[w++] = sp;
    }
    s->n_ents = w;
}

/* Byte classes of the candidate pass: where a detector can start. */
enum {
    P_DIGIT = 1,
    P_ALPHA = 2,
    P_SPECIAL = 4, // @ + ( - :
    P_KEY1 = 8,    // first letter of a key prefix: sk- sk_ rk_ AKIA.. gh?_ github_pat_ eyJ
    P_HEX = 16,    // a-f A-F (may start an IPv6 address)
};
static const uint8_t PCLS[256] = {
    ['('] = P_SPECIAL,
    ['+'] = P_SPECIAL,
    ['-'] = P_SPECIAL,
    ['0'] = P_DIGIT,
    ['1'] = P_DIGIT,
    ['2'] = P_DIGIT,
    ['3'] = P_DIGIT,
    ['4'] = P_DIGIT,
    ['5'] = P_DIGIT,
    ['6'] = P_DIGIT,
    ['7'] = P_DIGIT,
    ['8'] = P_DIGIT,
    ['9'] = P_DIGIT,
    [':'] = P_SPECIAL,
    ['@'] = P_SPECIAL,
    ['A'] = P_ALPHA | P_KEY1 | P_HEX,
    ['B'] = P_ALPHA | P_HEX,
    ['C'] = P_ALPHA | P_HEX,
    ['D'] = P_ALPHA | P_HEX,
    ['E'] = P_ALPHA | P_HEX,
    ['F'] = P_ALPHA | P_HEX,
    ['G'] = P_ALPHA,
    ['H'] = P_ALPHA,
    ['I'] = P_ALPHA,
    ['J'] = P_ALPHA,
    ['K'] = P_ALPHA,
    ['L'] = P_ALPHA,
    ['M'] = P_ALPHA,
    ['N'] = P_ALPHA,
    ['O'] = P_ALPHA,
    ['P'] = P_ALPHA,
    ['Q'] = P_ALPHA,
    ['R'] = P_ALPHA,
    ['S'] = P_ALPHA,
    ['T'] = P_ALPHA,
    ['U'] = P_ALPHA,
    ['V'] = P_ALPHA,
    ['W'] = P_ALPHA,
    ['X'] = P_ALPHA,
    ['Y'] = P_ALPHA,
    ['Z'] = P_ALPHA,
    ['a'] = P_ALPHA | P_HEX,
    ['b'] = P_ALPHA | P_HEX,
    ['c'] = P_ALPHA | P_HEX,
    ['d'] = P_ALPHA | P_HEX,
    ['e'] = P_ALPHA | P_KEY1 | P_HEX,
    ['f'] = P_ALPHA | P_HEX,
    ['g'] = P_ALPHA | P_KEY1,
    ['h'] = P_ALPHA,
    ['i'] = P_ALPHA,
    ['j'] = P_ALPHA,
    ['k'] = P_ALPHA,
    ['l'] = P_ALPHA,
    ['m'] = P_ALPHA,
    ['n'] = P_ALPHA,
    ['o'] = P_ALPHA,
    ['p'] = P_ALPHA,
    ['q'] = P_ALPHA,
    ['r'] = P_ALPHA | P_KEY1,
    ['s'] = P_ALPHA | P_KEY1,
    ['t'] = P_ALPHA,
    ['u'] = P_ALPHA,
    ['v'] = P_ALPHA,
    ['w'] = P_ALPHA,
    ['x'] = P_ALPHA,
    ['y'] = P_ALPHA,
    ['z'] = P_ALPHA,
};
#define P_ALNUM (P_DIGIT | P_ALPHA)

/* Whether try_word can find anything at word start i: a key prefix letter,
 * an IBAN's "CC99", or hex digits then ':' within an IPv6 group (<= 4). */
static bool word_candidate(const scan *c, size_t i)
{
    const unsigned char *t = c->t;
    uint8_t f = PCLS[t[i]];
    if (f & P_KEY1)
        return true;
    if (is_upper(t[i]) && i + 3 < c->len && is_upper(t[i + 1]) && is_digit(t[i + 2]) &&
        is_digit(t[i + 3]))
        return true;
    if (f & P_HEX) {
        size_t j = i;
        while (j < c->len && j - i < 5 && is_hex(t[j]))
            j++;
        return j < c->len && t[j] == ':';
    }
    return false;
}

int pii_scan(const guard_policy *p, guard_scratch *s, const char *text, size_t len)
{
    scan c = {p, s, (const unsigned char *)text, len, 0};
    const unsigned char *t = c.t;
    bool any_builtin = false;
    for (int k = 0; k < GUARD_N_BUILTIN; k++)
        any_builtin |= p->act[k] != GUARD_OFF;
    size_t i = 0;
    while (any_builtin && i < len && c.rc == 0) {
        // Most bytes (CJK text, spaces, punctuation) start nothing.
        while (i < len && PCLS[t[i]] == 0) {
            size_t k = t[i] >= 0x80 ? guard_skip_high8(t, i, len) : i;
            i = k > i ? k : i + 1;
        }
        if (i >= len)
            break;
        unsigned char x = t[i];
        bool ws = i == 0 || !is_alnum(t[i - 1]);
        size_t e = 0;
        if (is_digit(x)) {
            if (!ws) {
                i++;
                continue;
            }
            // A digit right after "x-" / "x." / "x_" continues a token ("ORD-138...").
            bool joined = i >= 2 && (t[i - 1] == '-' || t[i - 1] == '.' || t[i - 1] == '_' ||
                                     t[i - 1] == '/') &&
                          is_alnum(t[i - 2]);
            e = joined ? 0 : try_number(&c, i);
            i = e ? e : skip_token(&c, i);
            continue;
        }
        if (is_alpha(x)) {
            if (ws && !(i >= 1 && (t[i - 1] == '_' || t[i - 1] == '-')) &&
                word_candidate(&c, i))
                e = try_word(&c, i);
            if (!e) {
                e = guard_alnum_end(t, i, len);
            }
            i = e;
            continue;
        }
        if (x == '@') {
            if (on(&c, GUARD_T_EMAIL))
                e = try_email(&c, i);
        } else if (x == '+' || x == '(') {
            if (i + 1 < len && is_digit(t[i + 1]) && ws && on(&c, GUARD_T_PHONE))
                e = try_phone(&c, i);
        } else if (x == '-') {
            if (on(&c, GUARD_T_PRIVATE_KEY) && i + 11 <= len && t[i + 1] == '-')
                e = try_pem(&c, i);
        } else if (x == ':') {
            if (on(&c, GUARD_T_IPV6) && i + 1 < len && t[i + 1] == ':' &&
                (i == 0 || !(is_hex(t[i - 1]) || t[i - 1] == ':')))
                e = try_ipv6_run(&c, i);
        }
        i = e > i ? e : i + 1;
    }
    if (c.rc)
        return c.rc;
    int rc = custom_scan(p, s, text, len);
    if (rc)
        return rc;
    resolve_overlaps(s);
    return 0;
}

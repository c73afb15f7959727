/* Validation's per-record byte scans, compiled (jobs/data/scan.py says when each is used).
 *
 * scan(data) reads one JSON record (a .jsonl line as the user wrote it, or the job's canonical dump of a
 * record) once and returns:
 *   - the character hygiene kinds its strings may hold (bits in jobs/data/hygiene.py's KIND_BITS order),
 *     from their code points, whether written raw or as \u escapes;
 *   - the number of keys of the top-level object (a line repeating a key parses to fewer keys);
 *   - a 64-bit digest of its content: the strings' code points and the structure outside them, so that
 *     the same record written with other spacing or escapes has the same digest.
 * plain(line, ...) goes further for the lines of a plain format (text fields and flags): it decides the
 * record's validity from the line alone, as the parser, the schema and the semantic checks would, with
 * the same digest, its prompt key and side, and its length; or says that Python must decide.
 * fold(text) is the normalised text of the split's keys (jobs/data/split.py), and prompt_key(text) the
 * key of a prompt that is one text, in one call: split.normalized_key((text,)).
 *
 * Plain ASCII inside strings, most of a record's bytes in most languages, is skipped sixteen bytes at a
 * time (eight without SSE2).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define XXH_INLINE_ALL
#include "xxhash.h" /* pyarrow's copy (scripts/build-ext.sh): the xxh3 the Python xxhash package computes */
#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

enum { CONTROL = 1, PRIVATE_USE = 2, REPLACEMENT = 4, BIDI = 8, ZERO_WIDTH = 16, MOJIBAKE = 32 };

#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL
#define STRING_START 0xFF /* bytes that never occur in UTF-8: string bounds in the digested stream */
#define STRING_END 0xFE
#define BAD 0xFFFFFFFF /* what a malformed escape or UTF-8 sequence decodes to */

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the word-at-a-time scans assume a little-endian machine"
#endif

static inline uint64_t load8(const unsigned char *p) {
    uint64_t word;
    memcpy(&word, p, 8);
    return word;
}

static inline uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

/* ---- the digest: a murmur3-style 64-bit stream hash over the stream's 8-byte words ---- */

typedef struct {
    uint64_t h, acc, length;
    unsigned fill;      /* bytes waiting in acc */
    unsigned char *out; /* where plain() wants a string's decoded UTF-8 as well (NULL: nowhere) */
    Py_ssize_t written;
} Digest;

static inline void sink(Digest *d, const void *bytes, unsigned count) {
    if (d->out) {
        memcpy(d->out + d->written, bytes, count);
        d->written += count;
    }
}

static inline void mix(Digest *d, uint64_t word) {
    word *= 0x87c37b91114253d5ULL;
    word = rotl(word, 31) * 0x4cf5ad432745937fULL;
    d->h = rotl(d->h ^ word, 27) * 5 + 0x52dce729;
}

static inline void push_byte(Digest *d, unsigned byte) {
    unsigned char value = (unsigned char)byte;
    sink(d, &value, 1);
    d->acc |= (uint64_t)byte << (8 * d->fill);
    d->length++;
    if (++d->fill == 8) {
        mix(d, d->acc);
        d->acc = 0;
        d->fill = 0;
    }
}

static inline void push_word(Digest *d, uint64_t word) {
    sink(d, &word, 8);
    d->length += 8;
    if (d->fill == 0) {
        mix(d, word);
        return;
    }
    mix(d, d->acc | (word << (8 * d->fill)));
    d->acc = word >> (64 - 8 * d->fill);
}

/* The low `count` (1-7) bytes of `bytes`, the rest of which are zero. */
static inline void push_partial(Digest *d, uint64_t bytes, unsigned count) {
    sink(d, &bytes, count);
    unsigned total = d->fill + count;
    d->length += count;
    d->acc |= bytes << (8 * d->fill);
    if (total < 8) {
        d->fill = total;
        return;
    }
    mix(d, d->acc);
    d->acc = total == 8 ? 0 : bytes >> (8 * (8 - d->fill)); /* fill > 0 here: count < 8 */
    d->fill = total - 8;
}

static void push_code_point(Digest *d, uint32_t cp) { /* as UTF-8 (a lone surrogate as its 3 bytes) */
    if (cp < 0x80) {
        push_byte(d, cp);
    } else if (cp < 0x800) {
        push_byte(d, 0xC0 | (cp >> 6));
        push_byte(d, 0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        push_byte(d, 0xE0 | (cp >> 12));
        push_byte(d, 0x80 | ((cp >> 6) & 0x3F));
        push_byte(d, 0x80 | (cp & 0x3F));
    } else {
        push_byte(d, 0xF0 | (cp >> 18));
        push_byte(d, 0x80 | ((cp >> 12) & 0x3F));
        push_byte(d, 0x80 | ((cp >> 6) & 0x3F));
        push_byte(d, 0x80 | (cp & 0x3F));
    }
}

static uint64_t finish(Digest *d) {
    if (d->fill) mix(d, d->acc);
    uint64_t h = d->h ^ d->length;
    h ^= h >> 33; /* murmur3's finaliser */
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    return h ^ (h >> 33);
}

/* ---- hygiene kinds of one code point, given the one before it ---- */

/* A UTF-8 continuation byte read as Latin-1 (U+0080-U+00BF) or cp1252 (U+0152-U+017E, U+0192, U+02C6,
   U+02DC, U+2013-U+2122, taken broadly as U+2000-U+213F). */
static inline int reads_as_continuation(uint32_t cp) {
    return (cp >= 0x80 && cp <= 0xBF) || (cp >= 0x152 && cp <= 0x17E) || cp == 0x192 || cp == 0x2C6 ||
           cp == 0x2DC || (cp >= 0x2000 && cp <= 0x213F);
}

static unsigned kinds_of(uint32_t cp, uint32_t previous) {
    unsigned kinds = 0;
    if (previous >= 0xC2 && previous <= 0xF4 && reads_as_continuation(cp)) kinds |= MOJIBAKE; /* Ã© */
    if ((cp < 0x20 && cp != '\t' && cp != '\n' && cp != '\r') || (cp >= 0x7F && cp <= 0x9F)) return kinds | CONTROL;
    if (cp < 0x200B) return kinds;
    if (cp <= 0x200D || cp == 0x2060 || cp == 0xFEFF) return kinds | ZERO_WIDTH;
    if ((cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069)) return kinds | BIDI;
    if (cp >= 0xE000 && cp <= 0xF8FF) return kinds | PRIVATE_USE;
    if (cp == 0xFFFD) return kinds | REPLACEMENT;
    return kinds;
}

/* ---- decoding ---- */

static int hex4(const unsigned char *p, Py_ssize_t i, Py_ssize_t n, uint32_t *out) {
    if (i + 4 > n) return 0;
    uint32_t value = 0;
    for (int k = 0; k < 4; k++) {
        unsigned c = p[i + k];
        unsigned digit = (c >= '0' && c <= '9') ? c - '0' : ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') ? (c | 0x20) - 'a' + 10 : 16;
        if (digit > 15) return 0;
        value = value * 16 + digit;
    }
    *out = value;
    return 1;
}

/* The code point of the escape at p[i] == '\\'; *i moves past it. */
static uint32_t escape_at(const unsigned char *p, Py_ssize_t *i, Py_ssize_t n) {
    unsigned next = *i + 1 < n ? p[*i + 1] : 0;
    uint32_t cp = 0, low = 0;
    if (next != 'u') {
        *i += 2;
        switch (next) {
        case 'b': return '\b';
        case 'f': return '\f';
        case 'n': return '\n';
        case 'r': return '\r';
        case 't': return '\t';
        case '"': case '\\': case '/': return next;
        default: return BAD; /* not JSON */
        }
    }
    if (!hex4(p, *i + 2, n, &cp)) {
        *i += 2;
        return BAD;
    }
    *i += 6;
    if (cp >= 0xDC00 && cp <= 0xDFFF) return BAD; /* a low surrogate alone: the parser refuses it */
    if (cp < 0xD800 || cp > 0xDBFF) return cp;
    if (*i + 1 < n && p[*i] == '\\' && p[*i + 1] == 'u' && hex4(p, *i + 2, n, &low) && low >= 0xDC00 && low <= 0xDFFF) {
        *i += 6;
        return 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
    }
    return BAD; /* a high surrogate alone */
}

/* The code point of the UTF-8 character starting at p[*i] and its size in bytes, or BAD (and size 1) for
   what is not well-formed UTF-8 (overlong, a surrogate, beyond U+10FFFF, cut short); *i moves past it. */
static uint32_t utf8_at(const unsigned char *p, Py_ssize_t *i, Py_ssize_t n, unsigned *size) {
    unsigned lead = p[*i];
    unsigned bytes = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC2 ? 2 : 0;
    *size = 1;
    if (bytes == 0 || lead > 0xF4 || bytes > n - *i) {
        *i += 1;
        return BAD;
    }
    uint32_t cp = bytes == 4 ? lead & 0x07 : bytes == 3 ? lead & 0x0F : lead & 0x1F;
    for (unsigned k = 1; k < bytes; k++) {
        unsigned next = p[*i + k];
        if ((next & 0xC0) != 0x80) {
            *i += 1;
            return BAD;
        }
        cp = (cp << 6) | (next & 0x3F);
    }
    int overlong = (bytes == 3 && cp < 0x800) || (bytes == 4 && cp < 0x10000);
    if (overlong || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) {
        *i += 1;
        return BAD;
    }
    *i += bytes;
    *size = bytes;
    return cp;
}

/* Bit 7 of each of 8 bytes set where the byte may end plain ASCII text in a string: >= 0x7F, < 0x20, a
   backslash or a quote. Exact for the lowest flagged byte, which is all the scan uses. */
static inline uint64_t notable8(uint64_t word) {
    uint64_t high = (word | (word + ONES)) & HIGHS; /* >= 0x80, or 0x7F, which carries into bit 7 */
    uint64_t slash = word ^ (0x5CULL * ONES), quote = word ^ (0x22ULL * ONES);
    uint64_t control = (word - 0x20ULL * ONES) & ~word & HIGHS; /* < 0x20 */
    return high | control | ((slash - ONES) & ~slash & HIGHS) | ((quote - ONES) & ~quote & HIGHS);
}

typedef struct {
    unsigned kinds;
    long keys;
    int bad; /* not JSON a parser accepts: a raw control character, a bad escape or UTF-8, no closing quote */
} Found;

/* The inside of a string from p[*i] to its closing quote, hashed and judged; *i moves past the quote. */
#ifdef __SSE2__
/* A bit for each of 16 bytes that may end plain ASCII text in a string: >= 0x7F, < 0x20, a backslash or a
   quote. */
static inline unsigned notable16(const unsigned char *p) {
    __m128i bytes = _mm_loadu_si128((const __m128i *)p);
    __m128i marks = _mm_or_si128(_mm_cmpeq_epi8(bytes, _mm_set1_epi8('"')), _mm_cmpeq_epi8(bytes, _mm_set1_epi8('\\')));
    marks = _mm_or_si128(marks, _mm_cmpeq_epi8(bytes, _mm_set1_epi8(0x7F)));
    marks = _mm_or_si128(marks, _mm_cmplt_epi8(bytes, _mm_set1_epi8(0x20))); /* signed: >= 0x80 too */
    return (unsigned)_mm_movemask_epi8(_mm_or_si128(marks, bytes)); /* a byte's own bit 7: >= 0x80 */
}
#endif

/* The inside of a string from p[*i] to its closing quote, hashed and judged; *i moves past the quote. */
static void string_at(const unsigned char *p, Py_ssize_t *i, Py_ssize_t n, Digest *d, Found *found) {
    uint32_t previous = 0;
    while (*i < n) {
#ifdef __SSE2__
        while (*i + 16 <= n) {
            unsigned marks = notable16(p + *i);
            unsigned plain = marks ? (unsigned)__builtin_ctz(marks) : 16;
            if (plain >= 8) {
                push_word(d, load8(p + *i));
                *i += 8;
                plain -= 8;
                previous = 0;
            }
            if (plain == 8) {
                push_word(d, load8(p + *i));
                *i += 8;
                continue;
            }
            if (plain) {
                push_partial(d, load8(p + *i) & ((1ULL << (8 * plain)) - 1), plain);
                *i += plain;
                previous = 0;
            }
            break;
        }
#else
        if (*i + 8 <= n) {
            uint64_t word = load8(p + *i), flags = notable8(word);
            if (flags == 0) {
                push_word(d, word);
                *i += 8;
                previous = 0;
                continue;
            }
            unsigned plain = __builtin_ctzll(flags) / 8;
            if (plain) {
                push_partial(d, word & ((1ULL << (8 * plain)) - 1), plain);
                previous = 0;
                *i += plain;
            }
        }
#endif
        if (*i >= n) break;
        unsigned c = p[*i];
        if (c == '"') {
            *i += 1;
            return;
        }
        if (c >= 0x80) { /* raw UTF-8, hashed as it is */
            unsigned size;
            uint64_t bytes = 0;
            const unsigned char *start = p + *i;
            uint32_t cp = utf8_at(p, i, n, &size);
            if (cp == BAD) found->bad = 1;
            memcpy(&bytes, start, size);
            push_partial(d, bytes, size);
            found->kinds |= kinds_of(cp, previous);
            previous = cp;
            continue;
        }
        if (c < 0x20) found->bad = 1; /* raw inside a string: not JSON */
        uint32_t cp = c == '\\' ? escape_at(p, i, n) : (*i += 1, c);
        if (cp == BAD) {
            found->bad = 1;
            continue;
        }
        if (cp < 0x20 || cp >= 0x7F) found->kinds |= kinds_of(cp, previous); /* printable ASCII is no kind */
        push_code_point(d, cp);
        previous = cp;
    }
    found->bad = 1; /* no closing quote */
}

static PyObject *scan(PyObject *module, PyObject *arg) {
    (void)module;
    char *buffer;
    Py_ssize_t n;
    if (PyBytes_AsStringAndSize(arg, &buffer, &n) < 0) return NULL;
    const unsigned char *p = (const unsigned char *)buffer;
    Digest digest = {0, 0, 0, 0, NULL, 0};
    Found found = {0, 0, 0};
    int depth = 0;
    Py_ssize_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        if (c == '"') {
            i++;
            push_byte(&digest, STRING_START);
            string_at(p, &i, n, &digest, &found);
            push_byte(&digest, STRING_END);
            continue;
        }
        i++;
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') continue;
        if (c == '{' || c == '[') depth++;
        if (c == '}' || c == ']') depth--;
        if (c == ':' && depth == 1) found.keys++;
        push_byte(&digest, c);
    }
    return Py_BuildValue("(IlK)", found.kinds, found.keys, (unsigned long long)finish(&digest));
}

/* ---- fold ---- */

static unsigned char folded[256], kept[256];

static void fill_fold_tables(void) {
    for (int c = 0; c < 256; c++) {
        folded[c] = (unsigned char)((c >= 'A' && c <= 'Z') ? c + 32 : c);
        kept[c] = !(c == ' ' || c == '\t' || c == '\n' || c == '\r');
    }
}

/* fold() into `out` (room for n bytes); returns the folded length. */
static Py_ssize_t fold_into(const unsigned char *restrict p, Py_ssize_t n, unsigned char *restrict out) {
    Py_ssize_t k = 0;
    for (Py_ssize_t i = 0; i < n; i++) { /* branch-free: text is full of spaces */
        unsigned c = p[i];
        out[k] = folded[c];
        k += kept[c];
    }
    return k;
}

/* fold(text: str) -> bytes: the text as UTF-8 with ASCII letters lower-cased and ASCII whitespace (space,
   \t, \n, \r) removed. Raises UnicodeEncodeError for a lone surrogate (the caller falls back to Python). */
static PyObject *fold(PyObject *module, PyObject *arg) {
    (void)module;
    Py_ssize_t n;
    const char *text = PyUnicode_AsUTF8AndSize(arg, &n);
    if (text == NULL) return NULL;
    PyObject *out = PyBytes_FromStringAndSize(NULL, n);
    if (out == NULL) return NULL;
    const unsigned char *p = (const unsigned char *)text;
    Py_ssize_t k = fold_into(p, n, (unsigned char *)PyBytes_AS_STRING(out));
    if (_PyBytes_Resize(&out, k) < 0) return NULL;
    return out;
}

#define KEY_BUFFER 8192

/* xxh3-128 of "\x1e\x1f" + fold(text) + "\x1d": split.normalized_key's framing of one text. */
static XXH128_hash_t prompt_hash(const unsigned char *p, Py_ssize_t n) {
    unsigned char buffer[KEY_BUFFER];
    if (n + 3 <= KEY_BUFFER) { /* most prompts: one call */
        buffer[0] = 0x1e;
        buffer[1] = 0x1f;
        Py_ssize_t k = 2 + fold_into(p, n, buffer + 2);
        buffer[k++] = 0x1d;
        return XXH3_128bits(buffer, (size_t)k);
    }
    XXH3_state_t state;
    XXH3_128bits_reset(&state);
    XXH3_128bits_update(&state, "\x1e\x1f", 2);
    for (Py_ssize_t i = 0; i < n; i += KEY_BUFFER) {
        Py_ssize_t size = n - i < KEY_BUFFER ? n - i : KEY_BUFFER;
        XXH3_128bits_update(&state, buffer, (size_t)fold_into(p + i, size, buffer));
    }
    XXH3_128bits_update(&state, "\x1d", 1);
    return XXH3_128bits_digest(&state);
}

static PyObject *hash_int(XXH128_hash_t hash) { /* (high64 << 64) | low64, as xxhash's intdigest */
    unsigned char bytes[16];
    memcpy(bytes, &hash.low64, 8);
    memcpy(bytes + 8, &hash.high64, 8);
    return _PyLong_FromByteArray(bytes, 16, 1, 0);
}

/* prompt_key(text: str) -> int: split.normalized_key((text,)) in one call. */
static PyObject *prompt_key(PyObject *module, PyObject *arg) {
    (void)module;
    Py_ssize_t n;
    const char *text = PyUnicode_AsUTF8AndSize(arg, &n);
    if (text == NULL) return NULL;
    return hash_int(prompt_hash((const unsigned char *)text, n));
}

/* ---- plain(): a whole plain-format record, validated from its line without building it ---- */

static inline int json_space(unsigned c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* Python's str.isspace(), ASCII part. */
static inline int ascii_space(unsigned c) { return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f); }

/* Python's str.isspace(), beyond ASCII. */
static inline int other_space(uint32_t cp) {
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

typedef struct {
    const unsigned char *start, *end;
} Span;

/* The text without the whitespace str.strip() removes; 0 where that is not certain from ASCII alone (an
   empty core, or one that starts or ends with other whitespace): the Python checks then decide. */
static int core_of(Span text, Span *core) {
    const unsigned char *s = text.start, *e = text.end;
    while (s < e && ascii_space(*s)) s++;
    while (e > s && ascii_space(e[-1])) e--;
    if (s == e) return 0;
    unsigned size;
    Py_ssize_t at = 0;
    if (*s >= 0x80 && other_space(utf8_at(s, &at, e - s, &size))) return 0;
    const unsigned char *last = e - 1;
    while (last > s && (*last & 0xC0) == 0x80) last--;
    at = 0;
    if (*last >= 0x80 && other_space(utf8_at(last, &at, e - last, &size))) return 0;
    core->start = s;
    core->end = e;
    return 1;
}

static Py_ssize_t code_points(Span text) { /* UTF-8 bytes that do not continue a character */
    Py_ssize_t n = text.end - text.start, continuing = 0, i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t word = load8(text.start + i);
        uint64_t marks = (word & ~(word << 1) & HIGHS) >> 7; /* 1 in each byte that is 10xxxxxx */
        continuing += (Py_ssize_t)((marks * ONES) >> 56);     /* their sum, in the top byte */
    }
    for (; i < n; i++) continuing += (text.start[i] & 0xC0) == 0x80;
    return n - continuing;
}

typedef struct {
    const unsigned char *p;
    Py_ssize_t i, n;
    Digest digest;
    Found found;
} Reader;

static int expect(Reader *r, unsigned c) { /* the next token is c: hashed as scan() hashes it */
    while (r->i < r->n && json_space(r->p[r->i])) r->i++;
    if (r->i >= r->n || r->p[r->i] != c) return 0;
    r->i++;
    push_byte(&r->digest, c);
    return 1;
}

/* The next token is a string: hashed as scan() hashes it, decoded into `out` (the span *text). */
static int string_token(Reader *r, unsigned char *out, Span *text) {
    while (r->i < r->n && json_space(r->p[r->i])) r->i++;
    if (r->i >= r->n || r->p[r->i] != '"') return 0;
    r->i++;
    push_byte(&r->digest, STRING_START);
    r->digest.out = out;
    r->digest.written = 0;
    string_at(r->p, &r->i, r->n, &r->digest, &r->found);
    r->digest.out = NULL;
    push_byte(&r->digest, STRING_END);
    text->start = out;
    text->end = out + r->digest.written;
    return !r->found.bad;
}

static int literal(Reader *r, const char *word) {
    size_t size = strlen(word);
    while (r->i < r->n && json_space(r->p[r->i])) r->i++;
    if ((size_t)(r->n - r->i) < size || memcmp(r->p + r->i, word, size) != 0) return 0;
    for (size_t k = 0; k < size; k++) push_byte(&r->digest, (unsigned char)word[k]);
    r->i += (Py_ssize_t)size;
    return 1;
}

/* split.goes_to_eval: a seeded xxh3-64 of the side key's 16 bytes (little-endian) against the fraction. */
static int drawn(XXH128_hash_t key, unsigned long long seed, double fraction) {
    if (fraction <= 0) return 0;
    unsigned char bytes[16];
    memcpy(bytes, &key.low64, 8);
    memcpy(bytes + 8, &key.high64, 8);
    return (double)XXH3_64bits_withSeed(bytes, 16, seed) / 18446744073709551616.0 < fraction;
}

#define MAX_FIELDS 8
#define LINE_ON_STACK 16384

/* One field `name: value` of the record; its value's decoded text (kinds 't') goes to out + *used. */
static int field(Reader *r, PyObject *name, char kind, unsigned char *out, Py_ssize_t *used, Span *text) {
    Py_ssize_t size;
    const char *expected = PyUnicode_AsUTF8AndSize(name, &size);
    Span key;
    if (expected == NULL || !string_token(r, out + *used, &key)) return 0;
    if (key.end - key.start != size || memcmp(key.start, expected, (size_t)size) != 0) return 0;
    if (!expect(r, ':')) return 0;
    if (kind == 't') {
        if (!string_token(r, out + *used, text)) return 0;
        *used += text->end - text->start;
        return 1;
    }
    return literal(r, "true") || literal(r, "false"); /* kind 'b' */
}

/* The record's checks that need its texts: none blank, chosen not rejected (Python's, where ASCII suffices to
   decide; otherwise 0, and the Python checks decide). */
static int texts_pass(const Span *texts, const char *kinds, Py_ssize_t count, int chosen, int rejected) {
    Span cores[MAX_FIELDS] = {{0}};
    for (Py_ssize_t f = 0; f < count; f++)
        if (kinds[f] == 't' && !core_of(texts[f], &cores[f])) return 0;
    if (chosen < 0) return 1;
    Py_ssize_t a = cores[chosen].end - cores[chosen].start, b = cores[rejected].end - cores[rejected].start;
    return a != b || memcmp(cores[chosen].start, cores[rejected].start, (size_t)a) != 0;
}

/* plain(line, names, kinds, prompt, chosen, rejected, seed, fraction)
       -> (digest, prompt key, text length, held out) | None.

   A .jsonl line of a plain format, validated without building the record: a JSON object whose keys are
   exactly `names` in order, each value a string (kinds 't') or true/false ('b'), none blank, chosen
   (index) unlike rejected (index; -1: not a pair), no character hygiene finding. The digest is scan()'s,
   the prompt key split.prompt_key's of field `prompt` (index; -1: None), the length the texts' characters,
   held out split.goes_to_eval's draw from the prompt key (False without one). None when the line
   is anything else, or when deciding needs Python: the record then takes the full path. */
static PyObject *plain(PyObject *module, PyObject *args) {
    (void)module;
    const char *line, *kinds;
    Py_ssize_t n, count;
    PyObject *names;
    int prompt, chosen, rejected;
    unsigned long long seed;
    double fraction;
    if (!PyArg_ParseTuple(args, "y#O!y#iiiKd", &line, &n, &PyTuple_Type, &names, &kinds, &count, &prompt, &chosen,
                          &rejected, &seed, &fraction))
        return NULL;
    int pair_ok = chosen < 0 || (chosen < count && rejected >= 0 && rejected < count && kinds[chosen] == 't' &&
                                 kinds[rejected] == 't');
    int prompt_ok = prompt < 0 || (prompt < count && kinds[prompt] == 't');
    if (count != PyTuple_GET_SIZE(names) || count > MAX_FIELDS || !prompt_ok || !pair_ok) {
        PyErr_SetString(PyExc_ValueError, "plain(): fields, kinds and indexes disagree");
        return NULL;
    }
    unsigned char on_stack[LINE_ON_STACK], *out = n <= LINE_ON_STACK ? on_stack : PyMem_Malloc((size_t)n);
    if (out == NULL) return PyErr_NoMemory();
    Reader r = {(const unsigned char *)line, 0, n, {0, 0, 0, 0, NULL, 0}, {0, 0, 0}};
    Span texts[MAX_FIELDS] = {{0}};
    Py_ssize_t used = 0;
    int ok = expect(&r, '{');
    for (Py_ssize_t f = 0; ok && f < count; f++)
        ok = field(&r, PyTuple_GET_ITEM(names, f), kinds[f], out, &used, &texts[f]) && expect(&r, f + 1 < count ? ',' : '}');
    while (ok && r.i < n && json_space(r.p[r.i])) r.i++;
    ok = ok && r.i == n && !r.found.bad && r.found.kinds == 0 && texts_pass(texts, kinds, count, chosen, rejected);
    if (PyErr_Occurred()) { /* a name that is not text */
        if (out != on_stack) PyMem_Free(out);
        return NULL;
    }
    PyObject *result = Py_None;
    if (ok) {
        Py_ssize_t length = 0;
        for (Py_ssize_t f = 0; f < count; f++) length += kinds[f] == 't' ? code_points(texts[f]) : 0;
        int held_out = 0;
        PyObject *key = Py_NewRef(Py_None);
        if (prompt >= 0) {
            XXH128_hash_t hash = prompt_hash(texts[prompt].start, texts[prompt].end - texts[prompt].start);
            held_out = drawn(hash, seed, fraction);
            Py_SETREF(key, hash_int(hash));
        }
        result = key ? Py_BuildValue("(KNnO)", (unsigned long long)finish(&r.digest), key, length,
                                     held_out ? Py_True : Py_False)
                     : NULL;
    } else {
        Py_INCREF(result);
    }
    if (out != on_stack) PyMem_Free(out);
    return result;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_O, "(hygiene kinds, top-level keys, content digest) of one JSON record."},
    {"fold", fold, METH_O, "UTF-8 with ASCII lower-cased and ASCII whitespace removed."},
    {"prompt_key", prompt_key, METH_O, "xxh3-128 of a prompt's folded text, framed as split.normalized_key."},
    {"plain", plain, METH_VARARGS, "A plain-format .jsonl line validated without building it, or None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_scan", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__scan(void) {
    fill_fold_tables();
    return PyModule_Create(&module);
}

/* Validation's per-record byte scans, compiled (jobs/data/scan.py says when each is used).
 *
 * scan(data) reads one JSON record (a .jsonl line as the user wrote it, or the job's canonical dump of a
 * record) once and returns:
 *   - the character hygiene kinds its strings may hold (bits in jobs/data/hygiene.py's KIND_BITS order),
 *     from their code points, whether written raw or as \u escapes;
 *   - the number of keys of the top-level object (a line repeating a key parses to fewer keys);
 *   - a 64-bit digest of its content: the strings' code points and the structure outside them, so that
 *     the same record written with other spacing or escapes has the same digest.
 * fold(text) is the normalised text of the split's keys (jobs/data/split.py), and prompt_key(text) the
 * key of a prompt that is one text, in one call: split.normalized_key((text,)).
 *
 * Plain ASCII inside strings, most of a record's bytes in most languages, is skipped eight bytes at a time.
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
    unsigned fill; /* bytes waiting in acc */
} Digest;

static inline void mix(Digest *d, uint64_t word) {
    word *= 0x87c37b91114253d5ULL;
    word = rotl(word, 31) * 0x4cf5ad432745937fULL;
    d->h = rotl(d->h ^ word, 27) * 5 + 0x52dce729;
}

static inline void push_byte(Digest *d, unsigned byte) {
    d->acc |= (uint64_t)byte << (8 * d->fill);
    d->length++;
    if (++d->fill == 8) {
        mix(d, d->acc);
        d->acc = 0;
        d->fill = 0;
    }
}

static inline void push_word(Digest *d, uint64_t word) {
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
        default: return next; /* \" \\ \/ */
        }
    }
    if (!hex4(p, *i + 2, n, &cp)) {
        *i += 2;
        return 0xFFFFFFFF;
    }
    *i += 6;
    if (cp >= 0xD800 && cp <= 0xDBFF && *i + 1 < n && p[*i] == '\\' && p[*i + 1] == 'u' && hex4(p, *i + 2, n, &low) &&
        low >= 0xDC00 && low <= 0xDFFF) {
        *i += 6;
        cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
    }
    return cp;
}

/* The code point of the UTF-8 character starting at p[*i] (valid UTF-8: the parser checked it) and its
   size in bytes; *i moves past it. */
static uint32_t utf8_at(const unsigned char *p, Py_ssize_t *i, Py_ssize_t n, unsigned *size) {
    unsigned lead = p[*i];
    unsigned bytes = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    if (bytes > n - *i) bytes = (unsigned)(n - *i); /* truncated: not from a parsed line */
    uint32_t cp = bytes == 4 ? lead & 0x07 : bytes == 3 ? lead & 0x0F : bytes == 2 ? lead & 0x1F : lead;
    for (unsigned k = 1; k < bytes; k++) cp = (cp << 6) | (p[*i + k] & 0x3F);
    *i += bytes;
    *size = bytes;
    return cp;
}

/* Bit 7 of each of 8 bytes set where the byte may end plain ASCII text in a string: >= 0x7F, a backslash
   or a quote. Exact for the lowest flagged byte, which is all the scan uses. */
static inline uint64_t notable8(uint64_t word) {
    uint64_t high = (word | (word + ONES)) & HIGHS; /* >= 0x80, or 0x7F, which carries into bit 7 */
    uint64_t slash = word ^ (0x5CULL * ONES), quote = word ^ (0x22ULL * ONES);
    return high | ((slash - ONES) & ~slash & HIGHS) | ((quote - ONES) & ~quote & HIGHS);
}

typedef struct {
    unsigned kinds;
    long keys;
} Found;

/* The inside of a string from p[*i] to its closing quote, hashed and judged; *i moves past the quote. */
#ifdef __SSE2__
/* A bit for each of 16 bytes that may end plain ASCII text in a string: >= 0x7F, a backslash or a quote. */
static inline unsigned notable16(const unsigned char *p) {
    __m128i bytes = _mm_loadu_si128((const __m128i *)p);
    __m128i marks = _mm_or_si128(_mm_cmpeq_epi8(bytes, _mm_set1_epi8('"')), _mm_cmpeq_epi8(bytes, _mm_set1_epi8('\\')));
    marks = _mm_or_si128(marks, _mm_cmpeq_epi8(bytes, _mm_set1_epi8(0x7F)));
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
            memcpy(&bytes, start, size);
            push_partial(d, bytes, size);
            found->kinds |= kinds_of(cp, previous);
            previous = cp;
            continue;
        }
        uint32_t cp = c == '\\' ? escape_at(p, i, n) : (*i += 1, c);
        if (cp == 0xFFFFFFFF) continue; /* a malformed escape: not from a parsed line */
        if (cp < 0x20 || cp >= 0x7F) found->kinds |= kinds_of(cp, previous); /* printable ASCII is no kind */
        push_code_point(d, cp);
        previous = cp;
    }
}

static PyObject *scan(PyObject *module, PyObject *arg) {
    (void)module;
    char *buffer;
    Py_ssize_t n;
    if (PyBytes_AsStringAndSize(arg, &buffer, &n) < 0) return NULL;
    const unsigned char *p = (const unsigned char *)buffer;
    Digest digest = {0, 0, 0, 0};
    Found found = {0, 0};
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

/* prompt_key(text: str) -> int: xxh3-128 of "\x1e\x1f" + fold(text) + "\x1d", as xxhash's intdigest. */
static PyObject *prompt_key(PyObject *module, PyObject *arg) {
    (void)module;
    Py_ssize_t n;
    const char *text = PyUnicode_AsUTF8AndSize(arg, &n);
    if (text == NULL) return NULL;
    const unsigned char *p = (const unsigned char *)text;
    unsigned char buffer[KEY_BUFFER];
    XXH128_hash_t hash;
    if (n + 3 <= KEY_BUFFER) { /* most prompts: one call */
        buffer[0] = 0x1e;
        buffer[1] = 0x1f;
        Py_ssize_t k = 2 + fold_into(p, n, buffer + 2);
        buffer[k++] = 0x1d;
        hash = XXH3_128bits(buffer, (size_t)k);
    } else {
        XXH3_state_t state;
        XXH3_128bits_reset(&state);
        XXH3_128bits_update(&state, "\x1e\x1f", 2);
        for (Py_ssize_t i = 0; i < n; i += KEY_BUFFER) {
            Py_ssize_t size = n - i < KEY_BUFFER ? n - i : KEY_BUFFER;
            XXH3_128bits_update(&state, buffer, (size_t)fold_into(p + i, size, buffer));
        }
        XXH3_128bits_update(&state, "\x1d", 1);
        hash = XXH3_128bits_digest(&state);
    }
    unsigned char bytes[16]; /* (high64 << 64) | low64, little-endian */
    memcpy(bytes, &hash.low64, 8);
    memcpy(bytes + 8, &hash.high64, 8);
    return _PyLong_FromByteArray(bytes, 16, 1, 0);
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_O, "(hygiene kinds, top-level keys, content digest) of one JSON record."},
    {"fold", fold, METH_O, "UTF-8 with ASCII lower-cased and ASCII whitespace removed."},
    {"prompt_key", prompt_key, METH_O, "xxh3-128 of a prompt's folded text, framed as split.normalized_key."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_scan", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__scan(void) {
    fill_fold_tables();
    return PyModule_Create(&module);
}

/*
 * HighwayHash-64 for the Riegeli/records layer, written for this project from
 * the algorithm's published description (state of four 64-bit lanes in four
 * vectors v0, v1, mul0, mul1; 32-byte packets; zipper-merge byte shuffle;
 * 4 permute-and-update rounds to finalize a 64-bit hash).
 *
 * Two packet loops compute the same thing: a portable scalar one and an AVX2
 * one (the four lanes are exactly one __m256i).  The AVX2 loop is chosen at
 * import time when the CPU has it, unless the environment variable
 * IMAGEFORMAT_HIGHWAYHASH_PORTABLE is set to a non-empty value other than "0";
 * every entry point also takes portable=True so tests can compare both.
 *
 * Inputs are taken through the buffer protocol (no copy) and the GIL is
 * released while hashing anything but tiny inputs, so a reader thread and a
 * hashing thread can overlap.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define HH_HAVE_AVX2_PATH 1
#include <immintrin.h>
#else
#define HH_HAVE_AVX2_PATH 0
#endif

/* Below this many bytes, releasing the GIL costs more than it gains. */
#define HH_RELEASE_GIL_BYTES 16384

typedef struct {
    uint64_t v0[4];
    uint64_t v1[4];
    uint64_t mul0[4];
    uint64_t mul1[4];
} hh_lanes;

static const uint64_t kInitMul0[4] = {
    0xdbe6d5d5fe4cce2full, 0xa4093822299f31d0ull,
    0x13198a2e03707344ull, 0x243f6a8885a308d3ull};
static const uint64_t kInitMul1[4] = {
    0x3bd39e10cb0ef593ull, 0xc0acf169b5f18a8cull,
    0xbe5466cf34e90c6cull, 0x452821e638d01377ull};

/* 'Riegeli/', 'records\n' (little-endian), twice. */
static const uint64_t kRiegeliKey[4] = {
    0x2f696c6567656952ull, 0x0a7364726f636572ull,
    0x2f696c6567656952ull, 0x0a7364726f636572ull};

static int g_use_avx2 = 0; /* default packet loop */
static int g_cpu_avx2 = 0; /* what the CPU offers */

static inline uint64_t swap_halves(uint64_t x) { return (x >> 32) | (x << 32); }

static inline uint64_t load_le64(const uint8_t *p) {
    uint64_t x;
    memcpy(&x, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    x = __builtin_bswap64(x);
#endif
    return x;
}

static void lanes_init(hh_lanes *s, const uint64_t key[4]) {
    for (int i = 0; i < 4; i++) {
        s->mul0[i] = kInitMul0[i];
        s->mul1[i] = kInitMul1[i];
        s->v0[i] = kInitMul0[i] ^ key[i];
        s->v1[i] = kInitMul1[i] ^ swap_halves(key[i]);
    }
}

/*
 * Zipper merge of a lane pair (lo = lane 2k, hi = lane 2k+1): a fixed byte
 * permutation of the 16 bytes lo|hi, whose two halves are added to the
 * destination pair.  Byte sources (0..7 = lo, 8..15 = hi):
 *   new lo bytes: 3 12 2 5 14 1 15 0
 *   new hi bytes: 11 4 10 13 9 6 8 7
 * The AVX2 loop uses the same table with a byte shuffle.
 */
static const uint8_t kZipperSource[16] = {3, 12, 2, 5, 14, 1, 15, 0,
                                          11, 4, 10, 13, 9, 6, 8, 7};

static inline void zipper_add(uint64_t lo, uint64_t hi, uint64_t *dst_lo,
                              uint64_t *dst_hi) {
    uint8_t src[16], out[16];
    uint64_t a, b;
    memcpy(src, &lo, 8);
    memcpy(src + 8, &hi, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#error "big-endian hosts are not supported"
#endif
    for (int j = 0; j < 16; j++) out[j] = src[kZipperSource[j]];
    memcpy(&a, out, 8);
    memcpy(&b, out + 8, 8);
    *dst_lo += a;
    *dst_hi += b;
}

static inline void update_scalar(hh_lanes *s, const uint64_t in[4]) {
    for (int i = 0; i < 4; i++) {
        s->v1[i] += s->mul0[i] + in[i];
        s->mul0[i] ^= (s->v1[i] & 0xffffffffull) * (s->v0[i] >> 32);
        s->v0[i] += s->mul1[i];
        s->mul1[i] ^= (s->v0[i] & 0xffffffffull) * (s->v1[i] >> 32);
    }
    zipper_add(s->v1[0], s->v1[1], &s->v0[0], &s->v0[1]);
    zipper_add(s->v1[2], s->v1[3], &s->v0[2], &s->v0[3]);
    zipper_add(s->v0[0], s->v0[1], &s->v1[0], &s->v1[1]);
    zipper_add(s->v0[2], s->v0[3], &s->v1[2], &s->v1[3]);
}

static void packets_portable(hh_lanes *s, const uint8_t *p, size_t count) {
    uint64_t in[4];
    for (size_t k = 0; k < count; k++, p += 32) {
        in[0] = load_le64(p);
        in[1] = load_le64(p + 8);
        in[2] = load_le64(p + 16);
        in[3] = load_le64(p + 24);
        update_scalar(s, in);
    }
}

#if HH_HAVE_AVX2_PATH
__attribute__((target("avx2"))) static void packets_avx2(hh_lanes *s,
                                                         const uint8_t *p,
                                                         size_t count) {
    __m256i v0 = _mm256_loadu_si256((const __m256i *)s->v0);
    __m256i v1 = _mm256_loadu_si256((const __m256i *)s->v1);
    __m256i mul0 = _mm256_loadu_si256((const __m256i *)s->mul0);
    __m256i mul1 = _mm256_loadu_si256((const __m256i *)s->mul1);
    const __m256i zipper = _mm256_setr_epi8(
        3, 12, 2, 5, 14, 1, 15, 0, 11, 4, 10, 13, 9, 6, 8, 7,
        3, 12, 2, 5, 14, 1, 15, 0, 11, 4, 10, 13, 9, 6, 8, 7);
    for (size_t k = 0; k < count; k++, p += 32) {
        const __m256i in = _mm256_loadu_si256((const __m256i *)p);
        /* (v1 + in) + mul0: mul0's loop-carried path then has one add. */
        v1 = _mm256_add_epi64(_mm256_add_epi64(v1, in), mul0);
        /* _mm256_mul_epu32 multiplies the low 32 bits of each 64-bit lane. */
        mul0 = _mm256_xor_si256(
            mul0, _mm256_mul_epu32(v1, _mm256_srli_epi64(v0, 32)));
        v0 = _mm256_add_epi64(v0, mul1);
        mul1 = _mm256_xor_si256(
            mul1, _mm256_mul_epu32(v0, _mm256_srli_epi64(v1, 32)));
        v0 = _mm256_add_epi64(v0, _mm256_shuffle_epi8(v1, zipper));
        v1 = _mm256_add_epi64(v1, _mm256_shuffle_epi8(v0, zipper));
    }
    _mm256_storeu_si256((__m256i *)s->v0, v0);
    _mm256_storeu_si256((__m256i *)s->v1, v1);
    _mm256_storeu_si256((__m256i *)s->mul0, mul0);
    _mm256_storeu_si256((__m256i *)s->mul1, mul1);
}
#endif

static void run_packets(hh_lanes *s, const uint8_t *p, size_t count,
                        int portable) {
#if HH_HAVE_AVX2_PATH
    if (g_cpu_avx2 && !portable && g_use_avx2) {
        packets_avx2(s, p, count);
        return;
    }
#endif
    (void)portable;
    packets_portable(s, p, count);
}

static inline uint32_t rotl32(uint32_t x, unsigned n) {
    n &= 31;
    return n ? (x << n) | (x >> (32 - n)) : x;
}

/* The final 1..31 bytes: mixes the length in, then one packet built from
 * the whole 4-byte words plus a few tail bytes. */
static void absorb_tail(hh_lanes *s, const uint8_t *tail, size_t n) {
    uint8_t packet[32] = {0};
    const size_t whole = n & ~(size_t)3;
    const size_t odd = n & 3;
    uint64_t in[4];

    for (int i = 0; i < 4; i++) {
        s->v0[i] += ((uint64_t)n << 32) + n;
        uint32_t lo = (uint32_t)s->v1[i], hi = (uint32_t)(s->v1[i] >> 32);
        s->v1[i] = (uint64_t)rotl32(lo, (unsigned)n) |
                   ((uint64_t)rotl32(hi, (unsigned)n) << 32);
    }
    memcpy(packet, tail, whole);
    if (n & 16) {
        /* The last four bytes of the input, which may overlap `whole`. */
        memcpy(packet + 28, tail + n - 4, 4);
    } else if (odd) {
        packet[16] = tail[whole];
        packet[17] = tail[whole + (odd >> 1)];
        packet[18] = tail[whole + odd - 1];
    }
    for (int i = 0; i < 4; i++) in[i] = load_le64(packet + 8 * i);
    update_scalar(s, in);
}

static uint64_t finish64(hh_lanes s /* by value: digest leaves state */) {
    uint64_t in[4];
    for (int round = 0; round < 4; round++) {
        in[0] = swap_halves(s.v0[2]);
        in[1] = swap_halves(s.v0[3]);
        in[2] = swap_halves(s.v0[0]);
        in[3] = swap_halves(s.v0[1]);
        update_scalar(&s, in);
    }
    return s.v0[0] + s.v1[0] + s.mul0[0] + s.mul1[0];
}

static uint64_t hash_once(const uint8_t *p, size_t n, const uint64_t key[4],
                          int portable) {
    hh_lanes s;
    lanes_init(&s, key);
    run_packets(&s, p, n / 32, portable);
    if (n & 31) absorb_tail(&s, p + (n & ~(size_t)31), n & 31);
    return finish64(s);
}

/* ---------------------------------------------------------------- Python */

/* Accepts None (Riegeli key) or a sequence of four ints in [0, 2**64). */
static int parse_key(PyObject *obj, uint64_t key[4]) {
    if (obj == NULL || obj == Py_None) {
        memcpy(key, kRiegeliKey, sizeof(kRiegeliKey));
        return 1;
    }
    PyObject *seq = PySequence_Fast(obj, "key must be a sequence of 4 ints");
    if (seq == NULL) return 0;
    if (PySequence_Fast_GET_SIZE(seq) != 4) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "key must have exactly 4 words");
        return 0;
    }
    for (Py_ssize_t i = 0; i < 4; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyLong_Check(item)) {
            Py_DECREF(seq);
            PyErr_SetString(PyExc_TypeError, "key words must be ints");
            return 0;
        }
        unsigned long long w = PyLong_AsUnsignedLongLong(item);
        if (w == (unsigned long long)-1 && PyErr_Occurred()) {
            Py_DECREF(seq);
            PyErr_SetString(PyExc_ValueError,
                            "key words must be in [0, 2**64)");
            return 0;
        }
        key[i] = (uint64_t)w;
    }
    Py_DECREF(seq);
    return 1;
}

static PyObject *py_hash64(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"data", "key", "portable", NULL};
    Py_buffer view;
    PyObject *key_obj = NULL;
    int portable = 0;
    uint64_t key[4], h;
    (void)self;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*|Op", kwlist, &view,
                                     &key_obj, &portable))
        return NULL;
    if (!parse_key(key_obj, key)) {
        PyBuffer_Release(&view);
        return NULL;
    }
    if (view.len >= HH_RELEASE_GIL_BYTES) {
        Py_BEGIN_ALLOW_THREADS
        h = hash_once(view.buf, (size_t)view.len, key, portable);
        Py_END_ALLOW_THREADS
    } else {
        h = hash_once(view.buf, (size_t)view.len, key, portable);
    }
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLongLong(h);
}

static PyObject *py_hash64_rows(PyObject *self, PyObject *args,
                                PyObject *kwargs) {
    static char *kwlist[] = {"data", "row_size", "key", "portable", NULL};
    Py_buffer view;
    Py_ssize_t row_size;
    PyObject *key_obj = NULL, *out;
    int portable = 0;
    uint64_t key[4];
    (void)self;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*n|Op", kwlist, &view,
                                     &row_size, &key_obj, &portable))
        return NULL;
    if (row_size <= 0 || view.len % row_size != 0) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError,
                        "row_size must be positive and divide len(data)");
        return NULL;
    }
    if (!parse_key(key_obj, key)) {
        PyBuffer_Release(&view);
        return NULL;
    }
    Py_ssize_t rows = view.len / row_size;
    out = PyBytes_FromStringAndSize(NULL, rows * 8);
    if (out == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    uint8_t *dst = (uint8_t *)PyBytes_AS_STRING(out);
    const uint8_t *src = view.buf;
    for (Py_ssize_t r = 0; r < rows; r++) {
        uint64_t h = hash_once(src + r * row_size, (size_t)row_size, key,
                               portable);
        for (int b = 0; b < 8; b++) dst[8 * r + b] = (uint8_t)(h >> (8 * b));
    }
    PyBuffer_Release(&view);
    return out;
}

/* Incremental hasher: whole packets go straight to the lanes; up to 31
 * pending bytes wait in `pending` for the next update or digest. */
typedef struct {
    PyObject_HEAD
    hh_lanes lanes;
    uint8_t pending[32];
    size_t npending;
    int portable;
    int busy; /* set while hashing without the GIL */
} HasherObject;

static int Hasher_init(HasherObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"key", "portable", NULL};
    PyObject *key_obj = NULL;
    int portable = 0;
    uint64_t key[4];
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|Op", kwlist, &key_obj,
                                     &portable))
        return -1;
    if (!parse_key(key_obj, key)) return -1;
    lanes_init(&self->lanes, key);
    self->npending = 0;
    self->portable = portable;
    self->busy = 0;
    return 0;
}

static int Hasher_claim(HasherObject *self) {
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError,
                        "HighwayHash64 object used from two threads at once");
        return 0;
    }
    self->busy = 1;
    return 1;
}

static void absorb(HasherObject *self, const uint8_t *p, size_t n) {
    if (self->npending) {
        size_t take = 32 - self->npending;
        if (take > n) take = n;
        memcpy(self->pending + self->npending, p, take);
        self->npending += take;
        p += take;
        n -= take;
        if (self->npending < 32) return;
        run_packets(&self->lanes, self->pending, 1, self->portable);
        self->npending = 0;
    }
    run_packets(&self->lanes, p, n / 32, self->portable);
    memcpy(self->pending, p + (n & ~(size_t)31), n & 31);
    self->npending = n & 31;
}

static PyObject *Hasher_update(HasherObject *self, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    if (!Hasher_claim(self)) {
        PyBuffer_Release(&view);
        return NULL;
    }
    if (view.len >= HH_RELEASE_GIL_BYTES) {
        Py_BEGIN_ALLOW_THREADS
        absorb(self, view.buf, (size_t)view.len);
        Py_END_ALLOW_THREADS
    } else {
        absorb(self, view.buf, (size_t)view.len);
    }
    self->busy = 0;
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
}

static PyObject *Hasher_digest(HasherObject *self, PyObject *unused) {
    (void)unused;
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError,
                        "HighwayHash64.digest() while an update is running");
        return NULL;
    }
    hh_lanes copy = self->lanes;
    if (self->npending) absorb_tail(&copy, self->pending, self->npending);
    return PyLong_FromUnsignedLongLong(finish64(copy));
}

static PyObject *Hasher_copy(HasherObject *self, PyObject *unused);

static PyMethodDef Hasher_methods[] = {
    {"update", (PyCFunction)Hasher_update, METH_O,
     "Absorb a bytes-like object (not copied; GIL released for large ones)."},
    {"digest", (PyCFunction)Hasher_digest, METH_NOARGS,
     "HighwayHash-64 of everything absorbed so far, as an int."},
    {"copy", (PyCFunction)Hasher_copy, METH_NOARGS,
     "An independent hasher with the same state."},
    {NULL, NULL, 0, NULL}};

static PyTypeObject HasherType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tf_bigexport.imageformat._highwayhash.HighwayHash64",
    .tp_basicsize = sizeof(HasherObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "HighwayHash64(key=None, portable=False): incremental hasher.",
    .tp_methods = Hasher_methods,
    .tp_init = (initproc)Hasher_init,
    .tp_new = PyType_GenericNew,
};

static PyObject *Hasher_copy(HasherObject *self, PyObject *unused) {
    (void)unused;
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError,
                        "HighwayHash64.copy() while an update is running");
        return NULL;
    }
    HasherObject *other = PyObject_New(HasherObject, &HasherType);
    if (other == NULL) return NULL;
    other->lanes = self->lanes;
    memcpy(other->pending, self->pending, sizeof(self->pending));
    other->npending = self->npending;
    other->portable = self->portable;
    other->busy = 0;
    return (PyObject *)other;
}

static PyObject *py_implementation(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    return PyUnicode_FromString(g_use_avx2 ? "avx2" : "portable");
}

static PyMethodDef module_methods[] = {
    {"hash64", (PyCFunction)(void (*)(void))py_hash64,
     METH_VARARGS | METH_KEYWORDS,
     "hash64(data, key=None, portable=False) -> int"},
    {"hash64_rows", (PyCFunction)(void (*)(void))py_hash64_rows,
     METH_VARARGS | METH_KEYWORDS,
     "hash64_rows(data, row_size, key=None, portable=False) -> bytes: the "
     "little-endian 8-byte hash of each row_size-byte row."},
    {"implementation", py_implementation, METH_NOARGS,
     "'avx2' or 'portable': the packet loop used by default."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "tf_bigexport.imageformat._highwayhash",
    .m_doc = "Native HighwayHash-64 (portable and AVX2).",
    .m_size = -1,
    .m_methods = module_methods,
};

static int portable_forced_by_env(void) {
    const char *v = getenv("IMAGEFORMAT_HIGHWAYHASH_PORTABLE");
    return v != NULL && v[0] != '\0' && strcmp(v, "0") != 0;
}

PyMODINIT_FUNC PyInit__highwayhash(void) {
#if HH_HAVE_AVX2_PATH
    __builtin_cpu_init();
    g_cpu_avx2 = __builtin_cpu_supports("avx2") ? 1 : 0;
    g_use_avx2 = g_cpu_avx2 && !portable_forced_by_env();
#else
    g_use_avx2 = 0;
#endif
    if (PyType_Ready(&HasherType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL) return NULL;
    Py_INCREF(&HasherType);
    if (PyModule_AddObject(m, "HighwayHash64", (PyObject *)&HasherType) < 0)
        goto fail;
    if (PyModule_AddIntConstant(m, "CPU_HAS_AVX2", g_cpu_avx2) < 0) goto fail;
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}

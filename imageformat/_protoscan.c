/* Counting the protobuf messages a serialized message would create when parsed.
 *
 * A parsed message costs memory per (sub)message, not per byte: b"\x12\x00"
 * repeated is one empty submessage every two bytes, about forty times its
 * size once parsed, and more again in every reader that walks it.  scan()
 * walks the wire format against a compact schema (which field numbers of
 * which message type hold messages) and counts messages before anything is
 * parsed, stopping as soon as the count passes a limit.  Fields that are not
 * messages (scalars, strings, bytes, packed arrays, unknown fields) are
 * skipped without looking inside; groups are skipped by matching their end
 * tag.  Malformed wire data stops the scan: the parser would refuse it too.
 *
 * Schema: a tuple with one entry per message type, each a bytes object of
 * little-endian (uint32 field number, int32 child type) pairs sorted by field
 * number, listing the fields that hold messages (map fields point at a
 * synthetic entry type whose field 2 holds the value, if that is a message).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* protobuf's own default recursion limit (Python upb and C++) */
#define MAX_DEPTH 100

enum { SCAN_OK = 0, SCAN_TOO_MANY = 1, SCAN_MALFORMED = 2, SCAN_TOO_DEEP = 3 };

typedef struct {
    const uint32_t *pairs; /* number, child, number, child, ... */
    Py_ssize_t count;
} TypeFields;

typedef struct {
    Py_ssize_t end;   /* end of this message's bytes */
    int32_t type;     /* message type, or -1 inside a skipped group */
    uint32_t group;   /* field number of the group being skipped */
} Frame;

static int read_varint(const uint8_t *data, Py_ssize_t end, Py_ssize_t *pos, uint64_t *value) {
    uint64_t result = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (*pos >= end) return 0;
        uint8_t byte = data[(*pos)++];
        if (shift == 63 && byte > 1) return 0; /* more than 64 bits */
        result |= (uint64_t)(byte & 0x7f) << shift;
        if (byte < 0x80) {
            *value = result;
            return 1;
        }
    }
    return 0;
}

static int32_t child_type(const TypeFields *type, uint32_t number) {
    Py_ssize_t lo = 0, hi = type->count;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        uint32_t at = type->pairs[2 * mid];
        if (at == number) return (int32_t)type->pairs[2 * mid + 1];
        if (at < number) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

/* The walk itself; no Python calls, so it runs without the GIL. */
static int scan_wire(const uint8_t *data, Py_ssize_t size, const TypeFields *types, Py_ssize_t ntypes,
                     int32_t root, long long limit, long long *count, Py_ssize_t *where) {
    Frame stack[MAX_DEPTH + 2];
    int depth = 0;
    Py_ssize_t pos = 0;
    stack[0].end = size;
    stack[0].type = root;
    stack[0].group = 0;
    *count = 1;
    if (*count > limit) {
        *where = 0;
        return SCAN_TOO_MANY;
    }
    for (;;) {
        Frame *frame = &stack[depth];
        if (pos == frame->end) {
            if (frame->type < 0) { /* a group must end with its own end tag */
                *where = pos;
                return SCAN_MALFORMED;
            }
            if (depth == 0) return SCAN_OK;
            depth--;
            continue;
        }
        Py_ssize_t tag_at = pos;
        uint64_t tag;
        if (!read_varint(data, frame->end, &pos, &tag) || (tag >> 3) == 0 || (tag >> 3) > 0x1fffffff) {
            *where = tag_at;
            return SCAN_MALFORMED;
        }
        uint32_t number = (uint32_t)(tag >> 3);
        uint64_t value;
        switch (tag & 7) {
        case 0:
            if (!read_varint(data, frame->end, &pos, &value)) {
                *where = tag_at;
                return SCAN_MALFORMED;
            }
            break;
        case 1:
        case 5: {
            Py_ssize_t width = (tag & 7) == 1 ? 8 : 4;
            if (frame->end - pos < width) {
                *where = tag_at;
                return SCAN_MALFORMED;
            }
            pos += width;
            break;
        }
        case 2: {
            if (!read_varint(data, frame->end, &pos, &value) || value > (uint64_t)(frame->end - pos)) {
                *where = tag_at;
                return SCAN_MALFORMED;
            }
            int32_t child = frame->type >= 0 ? child_type(&types[frame->type], number) : -1;
            if (child < 0 || child >= ntypes) {
                pos += (Py_ssize_t)value;
                break;
            }
            if (++*count > limit) {
                *where = tag_at;
                return SCAN_TOO_MANY;
            }
            if (depth == MAX_DEPTH) {
                *where = tag_at;
                return SCAN_TOO_DEEP;
            }
            depth++;
            stack[depth].end = pos + (Py_ssize_t)value;
            stack[depth].type = child;
            stack[depth].group = 0;
            break;
        }
        case 3: /* start of a group: its content is skipped (no TensorFlow proto has groups) */
            if (depth == MAX_DEPTH) {
                *where = tag_at;
                return SCAN_TOO_DEEP;
            }
            depth++;
            stack[depth].end = frame->end;
            stack[depth].type = -1;
            stack[depth].group = number;
            break;
        case 4:
            if (frame->type >= 0 || frame->group != number) {
                *where = tag_at;
                return SCAN_MALFORMED;
            }
            depth--;
            break;
        default:
            *where = tag_at;
            return SCAN_MALFORMED;
        }
    }
}

static PyObject *py_scan(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer data;
    PyObject *schema;
    int root;
    long long limit;
    if (!PyArg_ParseTuple(args, "y*O!iL", &data, &PyTuple_Type, &schema, &root, &limit)) return NULL;
    Py_ssize_t ntypes = PyTuple_GET_SIZE(schema);
    PyObject *result = NULL;
    TypeFields *types = PyMem_Calloc(ntypes ? (size_t)ntypes : 1, sizeof(TypeFields));
    if (types == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < ntypes; i++) {
        PyObject *entry = PyTuple_GET_ITEM(schema, i);
        if (!PyBytes_Check(entry) || PyBytes_GET_SIZE(entry) % 8 != 0) {
            PyErr_SetString(PyExc_TypeError, "schema entries must be bytes of (uint32, int32) pairs");
            goto done;
        }
        types[i].pairs = (const uint32_t *)PyBytes_AS_STRING(entry);
        types[i].count = PyBytes_GET_SIZE(entry) / 8;
    }
    if (root < 0 || root >= ntypes) {
        PyErr_SetString(PyExc_ValueError, "root type out of range");
        goto done;
    }
    long long count = 0;
    Py_ssize_t where = 0;
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = scan_wire((const uint8_t *)data.buf, data.len, types, ntypes, root, limit, &count, &where);
    Py_END_ALLOW_THREADS
    result = Py_BuildValue("iLn", status, count, where);
done:
    PyMem_Free(types);
    PyBuffer_Release(&data);
    return result;
}

static PyMethodDef module_methods[] = {
    {"scan", py_scan, METH_VARARGS,
     "scan(data, schema, root, limit) -> (status, messages, offset): status 0 ok, 1 more than "
     "limit messages, 2 malformed, 3 nested deeper than 100; offset: where the scan stopped."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "tf_bigexport.imageformat._protoscan",
    .m_doc = "Counting the messages of serialized protobufs before they are parsed.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__protoscan(void) {
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL) return NULL;
    if (PyModule_AddIntConstant(m, "OK", SCAN_OK) < 0 || PyModule_AddIntConstant(m, "TOO_MANY", SCAN_TOO_MANY) < 0 ||
        PyModule_AddIntConstant(m, "MALFORMED", SCAN_MALFORMED) < 0 ||
        PyModule_AddIntConstant(m, "TOO_DEEP", SCAN_TOO_DEEP) < 0 ||
        PyModule_AddIntConstant(m, "MAX_DEPTH", MAX_DEPTH) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

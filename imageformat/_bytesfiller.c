/*
 * BytesFiller: a bytes object filled in place before anyone sees it.
 *
 * The Riegeli reader reads (preadv) and decompresses records straight into
 * the bytes objects it returns, instead of filling a bytearray and copying it
 * into bytes: for records of hundreds of MiB that copy would be most of the
 * reading time.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>

#if defined(__linux__)
#include <sys/mman.h>
#endif

/* A bytes object that can be filled in place before anyone sees it, so a
 * file reader can readinto() the final record object instead of copying a
 * bytearray into bytes.  take() hands the bytes out once no writable view
 * is left. */
typedef struct {
    PyObject_HEAD
    PyObject *bytes; /* NULL after take() */
    Py_ssize_t exports;
} FillerObject;

/* Big records are filled once, front to back: ask for transparent huge
 * pages so the kernel takes one fault per 2 MiB instead of per 4 KiB (with
 * THP in "madvise" mode this is the difference between page faults and the
 * copy itself dominating a read).  Best effort; errors are ignored. */
static void advise_huge_pages(char *buf, Py_ssize_t size) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    const uintptr_t huge = (uintptr_t)2 << 20;
    if (size < (Py_ssize_t)(4 * huge)) return;
    uintptr_t lo = ((uintptr_t)buf + huge - 1) & ~(huge - 1);
    uintptr_t hi = ((uintptr_t)buf + (uintptr_t)size) & ~(huge - 1);
    if (hi > lo) (void)madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
#else
    (void)buf;
    (void)size;
#endif
}

static PyObject *Filler_new(PyTypeObject *type, PyObject *args,
                            PyObject *kwargs) {
    static char *kwlist[] = {"size", NULL};
    Py_ssize_t size;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "n", kwlist, &size))
        return NULL;
    if (size < 0) {
        PyErr_SetString(PyExc_ValueError, "size must be >= 0");
        return NULL;
    }
    FillerObject *self = (FillerObject *)type->tp_alloc(type, 0);
    if (self == NULL) return NULL;
    self->bytes = PyBytes_FromStringAndSize(NULL, size);
    if (self->bytes == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    self->exports = 0;
    advise_huge_pages(PyBytes_AS_STRING(self->bytes), size);
    return (PyObject *)self;
}

static void Filler_dealloc(FillerObject *self) {
    Py_XDECREF(self->bytes);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Filler_getbuffer(FillerObject *self, Py_buffer *view, int flags) {
    if (self->bytes == NULL) {
        PyErr_SetString(PyExc_BufferError, "BytesFiller already taken");
        return -1;
    }
    if (PyBuffer_FillInfo(view, (PyObject *)self,
                          PyBytes_AS_STRING(self->bytes),
                          PyBytes_GET_SIZE(self->bytes), 0, flags) < 0)
        return -1;
    self->exports++;
    return 0;
}

static void Filler_releasebuffer(FillerObject *self, Py_buffer *view) {
    (void)view;
    self->exports--;
}

static PyObject *Filler_take(FillerObject *self, PyObject *unused) {
    (void)unused;
    if (self->bytes == NULL) {
        PyErr_SetString(PyExc_BufferError, "BytesFiller already taken");
        return NULL;
    }
    if (self->exports != 0) {
        PyErr_SetString(PyExc_BufferError,
                        "BytesFiller still has writable views; release them");
        return NULL;
    }
    PyObject *out = self->bytes;
    self->bytes = NULL;
    return out;
}

static PyBufferProcs Filler_as_buffer = {
    (getbufferproc)Filler_getbuffer,
    (releasebufferproc)Filler_releasebuffer,
};

static PyMethodDef Filler_methods[] = {
    {"take", (PyCFunction)Filler_take, METH_NOARGS,
     "Return the filled bytes object (only once, with no views left)."},
    {NULL, NULL, 0, NULL}};

static PyTypeObject FillerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tf_bigexport.imageformat._bytesfiller.BytesFiller",
    .tp_basicsize = sizeof(FillerObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "BytesFiller(size): writable buffer that becomes a bytes object.",
    .tp_methods = Filler_methods,
    .tp_as_buffer = &Filler_as_buffer,
    .tp_new = Filler_new,
    .tp_dealloc = (destructor)Filler_dealloc,
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "tf_bigexport.imageformat._bytesfiller",
    .m_doc = "BytesFiller(size): a writable buffer that becomes a bytes object.",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__bytesfiller(void) {
    if (PyType_Ready(&FillerType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL) return NULL;
    Py_INCREF(&FillerType);
    if (PyModule_AddObject(m, "BytesFiller", (PyObject *)&FillerType) < 0) {
        Py_DECREF(&FillerType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

/* The compact JSON object of every row of a few polars columns, in one pass over their Arrow buffers.
 *
 * encode(columns, members, start, stop, allocator=None, picks=None) -> (schema_capsule, array_capsule)
 *
 *   columns  polars Series (anything with __arrow_c_stream__) of Int64 or String (exported as Utf8View, as
 *            polars does), all of the same length
 *   members  the object's members in order, each (prefix, items, suffix): prefix and suffix are bytes, items a
 *            list of (before, column index, after). An item is `before` + the JSON value of the column's cell +
 *            `after`, and is left out where the cell is null; a member is `prefix` + its items separated by ","
 *            + `suffix`, and is left out when all its items are. Members are separated by ",", the whole row
 *            is wrapped in "{" and "}".
 *   start, stop  the rows to encode (so that two threads can encode the two halves: the GIL is released while
 *            the rows are written)
 *   allocator  polars' allocator capsule ("polars.polars._allocator", the one its plugins use), or None: the
 *            text is written into memory from polars' own allocator, which has pages to reuse from the stages
 *            before, where fresh memory from malloc costs a page fault every 4 kB
 *   picks    None, or an Int64 Series of row positions (ascending, no nulls): the rows to encode are then those,
 *            and start, stop count its entries (the valid rows of a frame, without copying them out of it)
 *
 * A cell's JSON value: an Int64 as its decimal digits; a String between quotes, escaped exactly as Python's
 * json.dumps(..., ensure_ascii=False) does: '"' and '\' with a backslash, \b \f \n \r \t, any other byte below
 * 0x20 as \u00XX (lower-case hex), everything else as it is (the text is UTF-8 already).
 *
 * The result is an Arrow Utf8View array (no nulls; polars' own layout, so taken without a copy) as the two
 * PyCapsules of the Arrow PyCapsule interface: pl.Series(obj) takes it when obj.__arrow_c_array__() returns them.
 * Raises TypeError for a column that is neither Int64 nor String, ValueError for columns of different lengths, a
 * bad row range or bad picks.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* --- the Arrow C data interface (https://arrow.apache.org/docs/format/CDataInterface.html) --------------- */

struct ArrowSchema {
    const char *format;
    const char *name;
    const char *metadata;
    int64_t flags;
    int64_t n_children;
    struct ArrowSchema **children;
    struct ArrowSchema *dictionary;
    void (*release)(struct ArrowSchema *);
    void *private_data;
};

struct ArrowArray {
    int64_t length;
    int64_t null_count;
    int64_t offset;
    int64_t n_buffers;
    int64_t n_children;
    const void **buffers;
    struct ArrowArray **children;
    struct ArrowArray *dictionary;
    void (*release)(struct ArrowArray *);
    void *private_data;
};

struct ArrowArrayStream {
    int (*get_schema)(struct ArrowArrayStream *, struct ArrowSchema *out);
    int (*get_next)(struct ArrowArrayStream *, struct ArrowArray *out);
    const char *(*get_last_error)(struct ArrowArrayStream *);
    void (*release)(struct ArrowArrayStream *);
    void *private_data;
};

/* --- input columns ------------------------------------------------------------------------------------- */

enum kind { INT64, UTF8_VIEW }; /* (polars exports its strings as views: no other string layout is taken) */

typedef struct {
    enum kind kind;
    Py_ssize_t n_chunks;
    struct ArrowArray *chunks;
    int64_t *starts; /* row number of each chunk's first row; starts[n_chunks] = length */
} Column;

static void column_free(Column *col) {
    for (Py_ssize_t i = 0; i < col->n_chunks; i++) {
        if (col->chunks[i].release != NULL) {
            col->chunks[i].release(&col->chunks[i]);
        }
    }
    PyMem_Free(col->chunks);
    PyMem_Free(col->starts);
    col->chunks = NULL;
    col->starts = NULL;
    col->n_chunks = 0;
}

/* Import every chunk of `series` through its Arrow stream; 0 on success, -1 with an exception set. */
static int column_import(PyObject *series, Py_ssize_t index, Column *col) {
    memset(col, 0, sizeof(*col));
    PyObject *capsule = PyObject_CallMethod(series, "__arrow_c_stream__", NULL);
    if (capsule == NULL) {
        return -1;
    }
    struct ArrowArrayStream *stream = PyCapsule_GetPointer(capsule, "arrow_array_stream");
    if (stream == NULL) {
        Py_DECREF(capsule);
        return -1;
    }
    int rc = -1;
    struct ArrowSchema schema;
    memset(&schema, 0, sizeof(schema));
    if (stream->get_schema(stream, &schema) != 0) {
        PyErr_Format(PyExc_RuntimeError, "column %zd: cannot read its Arrow schema", index);
        goto out;
    }
    const char *f = schema.format;
    if (strcmp(f, "l") == 0) {
        col->kind = INT64;
    } else if (strcmp(f, "vu") == 0) {
        col->kind = UTF8_VIEW;
    } else {
        PyErr_Format(PyExc_TypeError, "column %zd: Arrow format '%s' is neither Int64 (l) nor String (vu)", index, f);
        goto out;
    }
    Py_ssize_t cap = 0;
    int64_t rows = 0;
    for (;;) {
        if (col->n_chunks == cap) {
            cap = cap ? 2 * cap : 16;
            struct ArrowArray *chunks = PyMem_Realloc(col->chunks, (size_t)cap * sizeof(struct ArrowArray));
            int64_t *starts = PyMem_Realloc(col->starts, (size_t)(cap + 1) * sizeof(int64_t));
            if (chunks != NULL) {
                col->chunks = chunks;
            }
            if (starts != NULL) {
                col->starts = starts;
            }
            if (chunks == NULL || starts == NULL) {
                PyErr_NoMemory();
                goto out;
            }
        }
        struct ArrowArray *chunk = &col->chunks[col->n_chunks];
        memset(chunk, 0, sizeof(*chunk));
        if (stream->get_next(stream, chunk) != 0) {
            const char *why = stream->get_last_error != NULL ? stream->get_last_error(stream) : NULL;
            PyErr_Format(PyExc_RuntimeError, "column %zd: cannot read its Arrow data (%s)", index, why ? why : "?");
            goto out;
        }
        if (chunk->release == NULL) { /* the end of the stream */
            break;
        }
        col->starts[col->n_chunks] = rows;
        rows += chunk->length;
        col->n_chunks++;
    }
    col->starts[col->n_chunks] = rows;
    rc = 0;
out:
    if (schema.release != NULL) {
        schema.release(&schema);
    }
    Py_DECREF(capsule); /* releases the stream; the chunks we took stay ours */
    if (rc != 0) {
        column_free(col);
    }
    return rc;
}

static int64_t column_length(const Column *col) { return col->starts[col->n_chunks]; }

/* --- memory ------------------------------------------------------------------------------------------- */

/* polars' allocator capsule, as pyo3-polars declares it */
typedef struct {
    void *(*alloc)(size_t size, size_t align);
    void (*dealloc)(void *ptr, size_t size, size_t align);
    void *(*alloc_zeroed)(size_t size, size_t align);
    void *(*realloc)(void *ptr, size_t size, size_t align, size_t new_size);
} Allocator;

static void *system_alloc(size_t size, size_t align) {
    (void)align;
    return malloc(size);
}

static void system_dealloc(void *ptr, size_t size, size_t align) {
    (void)size;
    (void)align;
    free(ptr);
}

static const Allocator SYSTEM = {system_alloc, system_dealloc, NULL, NULL};

/* --- output buffer ------------------------------------------------------------------------------------- */

/* The rows' text, in blocks of BLOCK bytes (fewer for a few rows; more for a huge row); a row never straddles
 * two blocks. */
#define BLOCK ((size_t)8 << 20)

typedef struct {
    char *data;
    size_t cap, used;
} Block;

typedef struct {
    const Allocator *mem;
    char *data;       /* the current block */
    size_t len, cap;  /* bytes written to it, its size */
    size_t row;       /* where the current row starts in it */
    size_t block;     /* the size of a new block (smaller than BLOCK for a few rows) */
    Block *blocks;    /* the blocks, the current one last */
    size_t n_blocks, blocks_cap;
} Buffer;

/* Make room for `more` bytes: a new block when the current one is full (the row so far moves to it). */
static int grow_block(Buffer *b, size_t more) {
    size_t partial = b->len - b->row;
    size_t cap = partial + more > b->block / 2 ? 2 * (partial + more) : b->block;
    if (b->n_blocks == b->blocks_cap) {
        size_t n = b->blocks_cap ? 2 * b->blocks_cap : 64;
        Block *blocks = realloc(b->blocks, n * sizeof(Block));
        if (blocks == NULL) {
            return -1;
        }
        b->blocks = blocks;
        b->blocks_cap = n;
    }
    char *data = b->mem->alloc(cap, 64);
    if (data == NULL) {
        return -1;
    }
    if (b->n_blocks) {
        memcpy(data, b->data + b->row, partial);
        b->blocks[b->n_blocks - 1].used = b->row;
    }
    b->blocks[b->n_blocks++] = (Block){data, cap, 0};
    b->data = data;
    b->cap = cap;
    b->row = 0;
    b->len = partial;
    return 0;
}

static inline int grow(Buffer *b, size_t more) {
    return b->len + more <= b->cap ? 0 : grow_block(b, more);
}

static void blocks_free(const Allocator *mem, Block *blocks, size_t n) {
    for (size_t i = 0; i < n; i++) {
        mem->dealloc(blocks[i].data, blocks[i].cap, 64);
    }
    free(blocks);
}

static inline int put(Buffer *b, const char *s, size_t n) {
    if (grow(b, n) != 0) {
        return -1;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    return 0;
}

static unsigned char escape[256]; /* 0: as it is; else the letter after the backslash ('u': \u00XX) */

/* The index of the first byte of s[i:n] that JSON escapes (n if none), eight bytes at a time where it can. */
static inline size_t next_escape(const unsigned char *s, size_t i, size_t n) {
    const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
    while (i + 8 <= n) {
        uint64_t x;
        memcpy(&x, s + i, 8);
        uint64_t quote = x ^ (ones * '"'), backslash = x ^ (ones * '\\');
        /* a byte below 0x20, a zero byte of quote, a zero byte of backslash */
        uint64_t hit = ((x - ones * 0x20) & ~x) | ((quote - ones) & ~quote) | ((backslash - ones) & ~backslash);
        if (hit & high) {
            break;
        }
        i += 8;
    }
    while (i < n && !escape[s[i]]) {
        i++;
    }
    return i;
}

static inline int put_string(Buffer *b, const unsigned char *s, size_t n) {
    if (grow(b, n + 2) != 0) { /* room for the text as it is; each escape makes more room for itself */
        return -1;
    }
    char *out = b->data + b->len;
    *out++ = '"';
    size_t i = 0;
    while (i < n) {
        size_t run = next_escape(s, i, n);
        memcpy(out, s + i, run - i);
        out += run - i;
        if (run == n) {
            break;
        }
        b->len = (size_t)(out - b->data);
        if (grow(b, 6 + (n - run - 1) + 1) != 0) { /* the escape (at most \u00XX), the rest, the quote */
            return -1;
        }
        out = b->data + b->len; /* (a new block moves the row) */
        unsigned char c = s[run];
        *out++ = '\\';
        *out++ = (char)escape[c];
        if (escape[c] == 'u') {
            static const char hex[] = "0123456789abcdef";
            *out++ = '0';
            *out++ = '0';
            *out++ = hex[c >> 4];
            *out++ = hex[c & 15];
        }
        i = run + 1;
    }
    *out++ = '"';
    b->len = (size_t)(out - b->data);
    return 0;
}

static inline int put_int(Buffer *b, int64_t v) {
    char digits[24];
    int n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        digits[sizeof(digits) - 1 - n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) {
        digits[sizeof(digits) - 1 - n++] = '-';
    }
    return put(b, digits + sizeof(digits) - n, (size_t)n);
}

/* --- one cell ------------------------------------------------------------------------------------------ */

/* Where a column is read: its current chunk's buffers, and the current row's index in them. */
typedef struct {
    const Column *col;
    Py_ssize_t chunk;         /* the chunk holding the current row */
    int64_t at, end;          /* the current row's index in the chunk's buffers (offset included), and its end */
    const uint8_t *valid;     /* validity bitmap, NULL when the chunk has no nulls */
    const void *values;       /* int64 values or views */
    const void *const *data;  /* the data buffer(s) of text */
} Cursor;

static void cursor_enter(Cursor *c, Py_ssize_t chunk, int64_t at) {
    /* skip empty chunks, and the chunks `at` runs past */
    while (chunk < c->col->n_chunks && at >= c->col->chunks[chunk].length) {
        at -= c->col->chunks[chunk].length;
        chunk++;
    }
    c->chunk = chunk;
    if (chunk == c->col->n_chunks) {
        c->at = c->end = 0;
        return;
    }
    const struct ArrowArray *a = &c->col->chunks[chunk];
    c->at = a->offset + at;
    c->end = a->offset + a->length;
    c->valid = a->null_count == 0 ? NULL : a->buffers[0];
    c->values = a->buffers[1];
    c->data = a->buffers + 2;
}

static void cursor_seek(Cursor *c, int64_t row) {
    Py_ssize_t lo = 0, hi = c->col->n_chunks; /* the last chunk whose start is <= row */
    while (hi - lo > 1) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (c->col->starts[mid] <= row) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    cursor_enter(c, lo, row - c->col->starts[lo]);
}

static inline void cursor_advance(Cursor *c, int64_t rows) {
    c->at += rows;
    if (c->at >= c->end) {
        cursor_enter(c, c->chunk + 1, c->at - c->end);
    }
}

/* Write the JSON value of the cursor's cell; 1 if the cell is null (nothing written), -1 when out of memory. */
static inline int put_cell(Buffer *b, const Cursor *c) {
    int64_t i = c->at;
    if (c->valid != NULL && !((c->valid[i >> 3] >> (i & 7)) & 1)) {
        return 1;
    }
    switch (c->col->kind) {
    case INT64:
        return put_int(b, ((const int64_t *)c->values)[i]);
    case UTF8_VIEW: {
        const unsigned char *view = (const unsigned char *)c->values + 16 * i;
        int32_t length, buffer, offset;
        memcpy(&length, view, 4);
        if (length <= 12) {
            return put_string(b, view + 4, (size_t)length);
        }
        memcpy(&buffer, view + 8, 4);
        memcpy(&offset, view + 12, 4);
        return put_string(b, (const unsigned char *)c->data[buffer] + offset, (size_t)length);
    }
    }
    return -1;
}

/* --- the program: members and items -------------------------------------------------------------------- */

typedef struct {
    char *before, *after; /* copies: the GIL is let go while they are read, and the caller's objects may change */
    Py_ssize_t before_len, after_len, column;
} Item;

typedef struct {
    char *prefix, *suffix;
    Py_ssize_t prefix_len, suffix_len, n_items;
    Item *items;
} Member;

static void members_free(Member *members, Py_ssize_t n) {
    if (members == NULL) {
        return;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        for (Py_ssize_t k = 0; members[i].items != NULL && k < members[i].n_items; k++) {
            PyMem_Free(members[i].items[k].before);
            PyMem_Free(members[i].items[k].after);
        }
        PyMem_Free(members[i].items);
        PyMem_Free(members[i].prefix);
        PyMem_Free(members[i].suffix);
    }
    PyMem_Free(members);
}

/* A copy of the bytes object `obj` (which must be one) in *out, its length in *len; -1 with an exception set. */
static int copy_bytes(PyObject *obj, const char *what, char **out, Py_ssize_t *len) {
    if (!PyBytes_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be bytes, not %.80s", what, Py_TYPE(obj)->tp_name);
        return -1;
    }
    *len = PyBytes_GET_SIZE(obj);
    *out = PyMem_Malloc((size_t)(*len ? *len : 1));
    if (*out == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(*out, PyBytes_AS_STRING(obj), (size_t)*len);
    return 0;
}

/* The item (before, column index, after) `obj` into `it`; -1 with an exception set. */
static int item_parse(PyObject *obj, Py_ssize_t m, Py_ssize_t n_columns, Item *it) {
    if (!PyTuple_Check(obj) || PyTuple_GET_SIZE(obj) != 3) {
        PyErr_Format(PyExc_TypeError, "member %zd: an item must be a tuple (before, column index, after)", m);
        return -1;
    }
    it->column = PyLong_AsSsize_t(PyTuple_GET_ITEM(obj, 1));
    if (it->column == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (it->column < 0 || it->column >= n_columns) {
        PyErr_Format(PyExc_ValueError, "member %zd: column index %zd out of range", m, it->column);
        return -1;
    }
    if (copy_bytes(PyTuple_GET_ITEM(obj, 0), "an item's text before", &it->before, &it->before_len) != 0 ||
        copy_bytes(PyTuple_GET_ITEM(obj, 2), "an item's text after", &it->after, &it->after_len) != 0) {
        return -1;
    }
    return 0;
}

/* Parse `spec`, a sequence of (prefix, items, suffix), into members holding their own copies of the texts. */
static Member *members_parse(PyObject *spec, Py_ssize_t n_columns, Py_ssize_t *n_members) {
    PyObject *seq = PySequence_Fast(spec, "members must be a list");
    if (seq == NULL) {
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    Member *members = PyMem_Calloc((size_t)(n ? n : 1), sizeof(Member));
    if (members == NULL) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t m = 0; m < n; m++) {
        PyObject *obj = PySequence_Fast_GET_ITEM(seq, m);
        Member *mb = &members[m];
        if (!PyTuple_Check(obj) || PyTuple_GET_SIZE(obj) != 3) {
            PyErr_Format(PyExc_TypeError, "member %zd must be a tuple (prefix, items, suffix)", m);
            goto fail;
        }
        if (copy_bytes(PyTuple_GET_ITEM(obj, 0), "a member's prefix", &mb->prefix, &mb->prefix_len) != 0 ||
            copy_bytes(PyTuple_GET_ITEM(obj, 2), "a member's suffix", &mb->suffix, &mb->suffix_len) != 0) {
            goto fail;
        }
        PyObject *items = PySequence_Fast(PyTuple_GET_ITEM(obj, 1), "a member's items must be a list");
        if (items == NULL) {
            goto fail;
        }
        Py_ssize_t n_items = PySequence_Fast_GET_SIZE(items);
        mb->items = PyMem_Calloc((size_t)(n_items ? n_items : 1), sizeof(Item));
        if (mb->items == NULL) {
            Py_DECREF(items);
            PyErr_NoMemory();
            goto fail;
        }
        for (Py_ssize_t k = 0; k < n_items; k++) {
            mb->n_items = k + 1; /* (what members_free frees) */
            if (item_parse(PySequence_Fast_GET_ITEM(items, k), m, n_columns, &mb->items[k]) != 0) {
                Py_DECREF(items);
                goto fail;
            }
        }
        Py_DECREF(items);
    }
    Py_DECREF(seq);
    *n_members = n;
    return members;
fail:
    Py_DECREF(seq);
    members_free(members, n);
    return NULL;
}

/* --- the output array, handed to polars through the Arrow PyCapsule interface --------------------------- */

typedef struct {
    const Allocator *mem; /* (polars' capsule points to a static table: it outlives every array) */
    unsigned char *views;
    size_t views_size;
    Block *blocks;
    size_t n_blocks;
    int64_t *sizes;     /* the used length of each block (Arrow's variadic buffer sizes) */
    const void **buffers;
} Output;

static void output_free(Output *o) {
    if (o->views != NULL) {
        o->mem->dealloc(o->views, o->views_size, 64);
    }
    blocks_free(o->mem, o->blocks, o->n_blocks);
    free(o->sizes);
    free(o->buffers);
    free(o);
}

static void release_array(struct ArrowArray *a) {
    output_free(a->private_data);
    a->release = NULL;
}

static void release_schema(struct ArrowSchema *s) { s->release = NULL; }

static void capsule_array_free(PyObject *capsule) {
    struct ArrowArray *a = PyCapsule_GetPointer(capsule, "arrow_array");
    if (a != NULL && a->release != NULL) {
        a->release(a);
    }
    free(a);
}

static void capsule_schema_free(PyObject *capsule) {
    struct ArrowSchema *s = PyCapsule_GetPointer(capsule, "arrow_schema");
    if (s != NULL && s->release != NULL) {
        s->release(s);
    }
    free(s);
}

/* The capsules of a Utf8View array of `length` rows over `o` (which they own from then on, also on failure). */
static PyObject *to_capsules(Output *o, int64_t length) {
    struct ArrowArray *a = calloc(1, sizeof(struct ArrowArray));
    struct ArrowSchema *s = calloc(1, sizeof(struct ArrowSchema));
    o->sizes = malloc((o->n_blocks + 1) * sizeof(int64_t));
    o->buffers = malloc((o->n_blocks + 3) * sizeof(void *));
    if (a == NULL || s == NULL || o->sizes == NULL || o->buffers == NULL) {
        free(a);
        free(s);
        output_free(o);
        return PyErr_NoMemory();
    }
    o->buffers[0] = NULL; /* no nulls */
    o->buffers[1] = o->views;
    for (size_t i = 0; i < o->n_blocks; i++) {
        o->buffers[2 + i] = o->blocks[i].data;
        o->sizes[i] = (int64_t)o->blocks[i].used;
    }
    o->buffers[2 + o->n_blocks] = o->sizes;
    a->length = length;
    a->n_buffers = (int64_t)o->n_blocks + 3;
    a->buffers = o->buffers;
    a->release = release_array;
    a->private_data = o;
    s->format = "vu";
    s->name = "";
    s->release = release_schema;
    PyObject *schema = PyCapsule_New(s, "arrow_schema", capsule_schema_free);
    if (schema == NULL) {
        release_array(a);
        free(a);
        free(s);
        return NULL;
    }
    PyObject *array = PyCapsule_New(a, "arrow_array", capsule_array_free);
    if (array == NULL) {
        Py_DECREF(schema);
        release_array(a);
        free(a);
        return NULL;
    }
    PyObject *pair = PyTuple_Pack(2, schema, array);
    Py_DECREF(schema);
    Py_DECREF(array);
    return pair;
}

/* --- encode -------------------------------------------------------------------------------------------- */

/* Write n rows into `b`, one 16-byte view each into `views`: rows start, start + 1, … of the columns, or, with
 * `picks`, the rows of the columns whose positions picks holds from its row `start` on (ascending, each below
 * `length`). 0; -1 when out of memory or a row is longer than a view can say (2 GB); -2 for a bad position. */
static int write_rows(Buffer *b, unsigned char *views, Cursor *cursors, Py_ssize_t n_columns, const Member *members,
                      Py_ssize_t n_members, Cursor *picks, int64_t length, int64_t start, int64_t n) {
    int64_t at = start; /* the columns' row */
    if (picks != NULL) {
        cursor_seek(picks, start);
        at = n ? ((const int64_t *)picks->values)[picks->at] : 0;
        if (at < 0 || at >= length) {
            return n ? -2 : 0;
        }
    }
    for (Py_ssize_t k = 0; k < n_columns; k++) {
        cursor_seek(&cursors[k], at);
    }
    for (int64_t r = 0; r < n; r++) {
        int failed = put(b, "{", 1);
        int first_member = 1;
        for (Py_ssize_t m = 0; m < n_members && !failed; m++) {
            const Member *mb = &members[m];
            size_t member_start = b->len - b->row; /* relative: a new block moves the row */
            int any = 0;
            if (!first_member) {
                failed |= put(b, ",", 1);
            }
            failed |= put(b, mb->prefix, (size_t)mb->prefix_len);
            for (Py_ssize_t k = 0; k < mb->n_items && !failed; k++) {
                const Item *it = &mb->items[k];
                size_t item_start = b->len - b->row;
                if (any) {
                    failed |= put(b, ",", 1);
                }
                failed |= put(b, it->before, (size_t)it->before_len);
                int null = failed ? 0 : put_cell(b, &cursors[it->column]);
                if (null < 0) {
                    failed = 1;
                } else if (null) {
                    b->len = b->row + item_start;
                } else {
                    failed |= put(b, it->after, (size_t)it->after_len);
                    any = 1;
                }
            }
            if (any) {
                failed |= put(b, mb->suffix, (size_t)mb->suffix_len);
                first_member = 0;
            } else {
                b->len = b->row + member_start;
            }
        }
        failed |= put(b, "}", 1);
        size_t bytes = b->len - b->row;
        if (failed || bytes > INT32_MAX) {
            return -1;
        }
        unsigned char *view = views + 16 * r;
        int32_t len32 = (int32_t)bytes;
        memset(view, 0, 16);
        memcpy(view, &len32, 4);
        if (bytes <= 12) { /* short: inline in the view */
            memcpy(view + 4, b->data + b->row, bytes);
            b->len = b->row;
        } else {
            if (b->row > INT32_MAX && grow_block(b, 0) != 0) { /* (past an oversized row: a view's offset is 31 bits) */
                return -1;
            }
            int32_t buffer = (int32_t)(b->n_blocks - 1), offset = (int32_t)b->row;
            memcpy(view + 4, b->data + b->row, 4);
            memcpy(view + 8, &buffer, 4);
            memcpy(view + 12, &offset, 4);
            b->row = b->len;
        }
        int64_t step = 1;
        if (picks != NULL && r + 1 < n) {
            cursor_advance(picks, 1);
            int64_t next = ((const int64_t *)picks->values)[picks->at];
            if (next < at || next >= length) {
                return -2;
            }
            step = next - at;
            at = next;
        }
        for (Py_ssize_t k = 0; k < n_columns; k++) {
            cursor_advance(&cursors[k], step);
        }
    }
    if (b->n_blocks) {
        b->blocks[b->n_blocks - 1].used = b->len;
    }
    return 0;
}

static PyObject *encode(PyObject *self, PyObject *args) {
    PyObject *columns_obj, *members_obj, *allocator = Py_None, *picks_obj = Py_None;
    Py_ssize_t start, stop;
    if (!PyArg_ParseTuple(args, "OOnn|OO", &columns_obj, &members_obj, &start, &stop, &allocator, &picks_obj)) {
        return NULL;
    }
    const Allocator *mem = &SYSTEM;
    if (allocator != Py_None) {
        mem = PyCapsule_GetPointer(allocator, "polars.polars._allocator");
        if (mem == NULL) {
            return NULL;
        }
    }
    PyObject *series = PySequence_Fast(columns_obj, "columns must be a list");
    if (series == NULL) {
        return NULL;
    }
    Py_ssize_t n_columns = PySequence_Fast_GET_SIZE(series);
    Py_ssize_t n_members = 0;
    Member *members = NULL;
    Column *cols = PyMem_Calloc((size_t)(n_columns ? n_columns : 1), sizeof(Column));
    Cursor *cursors = PyMem_Calloc((size_t)(n_columns ? n_columns : 1), sizeof(Cursor));
    PyObject *result = NULL;
    Py_ssize_t imported = 0;
    Column picks_col = {INT64, 0, NULL, NULL};
    Cursor picks = {&picks_col, 0, 0, 0, NULL, NULL, NULL};
    if (cols == NULL || cursors == NULL) {
        PyErr_NoMemory();
        goto out;
    }
    members = members_parse(members_obj, n_columns, &n_members);
    if (members == NULL) {
        goto out;
    }
    for (; imported < n_columns; imported++) {
        if (column_import(PySequence_Fast_GET_ITEM(series, imported), imported, &cols[imported]) != 0) {
            goto out;
        }
        cursors[imported].col = &cols[imported];
        if (column_length(&cols[imported]) != column_length(&cols[0])) {
            imported++;
            PyErr_SetString(PyExc_ValueError, "columns of different lengths");
            goto out;
        }
    }
    int64_t length = n_columns ? column_length(&cols[0]) : 0;
    int64_t rows = length;
    if (picks_obj != Py_None) {
        if (column_import(picks_obj, -1, &picks_col) != 0) {
            goto out;
        }
        int nulls = picks_col.kind != INT64;
        for (Py_ssize_t i = 0; i < picks_col.n_chunks; i++) {
            nulls |= picks_col.chunks[i].null_count != 0;
        }
        if (nulls) {
            PyErr_SetString(PyExc_ValueError, "picks must be Int64 positions without nulls");
            goto out;
        }
        rows = column_length(&picks_col);
    }
    if (start < 0 || stop < start || stop > rows) {
        PyErr_Format(PyExc_ValueError, "rows %zd to %zd are not within the %lld rows", start, stop, (long long)rows);
        goto out;
    }
    int64_t n = stop - start;
    Output *o = calloc(1, sizeof(Output));
    if (o == NULL) {
        PyErr_NoMemory();
        goto out;
    }
    o->mem = mem;
    o->views_size = (size_t)(n ? n : 1) * 16;
    o->views = mem->alloc(o->views_size, 64);
    if (o->views == NULL) {
        output_free(o);
        PyErr_NoMemory();
        goto out;
    }
    size_t guess = (size_t)n * 256; /* (a payload is a few hundred bytes) */
    Buffer b = {mem, NULL, 0, 0, 0, guess < 4096 ? 4096 : guess > BLOCK ? BLOCK : guess, NULL, 0, 0};
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = write_rows(&b, o->views, cursors, n_columns, members, n_members, picks_obj == Py_None ? NULL : &picks,
                    length, start, n);
    Py_END_ALLOW_THREADS
    o->blocks = b.blocks;
    o->n_blocks = b.n_blocks;
    if (rc != 0) {
        output_free(o);
        if (rc == -2) {
            PyErr_Format(PyExc_ValueError, "picks must be ascending positions below %lld", (long long)length);
        } else {
            PyErr_SetString(PyExc_MemoryError, "out of memory, or a row of more than 2 GB");
        }
        goto out;
    }
    result = to_capsules(o, n);
out:
    for (Py_ssize_t k = 0; k < imported; k++) {
        column_free(&cols[k]);
    }
    column_free(&picks_col);
    PyMem_Free(cols);
    PyMem_Free(cursors);
    members_free(members, n_members);
    Py_DECREF(series);
    return result;
}

static PyMethodDef methods[] = {
    {"encode", encode, METH_VARARGS,
     "encode(columns, members, start, stop, allocator=None, picks=None) -> (schema_capsule, array_capsule)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_jsonrows", "The compact JSON object of every row of a few polars columns.", -1, methods,
};

PyMODINIT_FUNC PyInit__jsonrows(void) {
    for (int c = 0; c < 0x20; c++) {
        escape[c] = 'u';
    }
    escape['\b'] = 'b';
    escape['\f'] = 'f';
    escape['\n'] = 'n';
    escape['\r'] = 'r';
    escape['\t'] = 't';
    escape['"'] = '"';
    escape['\\'] = '\\';
    return PyModule_Create(&module);
}

/* One pass over delimited text: is its quoting well formed, and how many records have the wrong number of fields?
 *
 * scan(data, sep, width) -> (well_formed, records, ragged, spaced)
 *
 *   data   a bytes-like object (UTF-8 text ending with a line end; the GIL is released while it is read)
 *   sep    the delimiter, one byte
 *   width  the number of fields every record should have (the header's)
 *
 * Well formed means what pipeline/read_csv.py's pure-polars proof calls well quoted: a field is either quoted
 * (starts with '"', holds anything but a lone '"', "" being a literal quote, and its closing quote is followed by
 * the delimiter, a line end or the end) or unquoted (holds no '"' at all). On such text polars and Python's csv
 * module split records and fields alike, so the counts below are the records and fields both see.
 *
 * records  the records, header included (a line end inside a quoted field does not end a record); an empty line
 *          (nothing, or only '\r', before its '\n') is a record too: polars reads it as an all-null row
 * ragged   records that are not empty lines and do not have exactly `width` fields
 * spaced   `width` bytes of flags, per column:
 *          1  some field starts with a byte that can start whitespace (ASCII space or control 9-13, or the lead
 *             byte of a non-ASCII space: 0xC2, 0xE1, 0xE2, 0xE3), or is a quoted empty field "" (polars reads it
 *             as an empty text, not null): only such columns can hold a cell that is blank but not empty;
 *          2  some field ends with whitespace: ASCII space or control 9-13, or the UTF-8 of a non-ASCII space
 *             (U+0085, U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000); a line end's
 *             '\r' before its '\n' is not part of the field (polars drops it too).
 *          A column with neither flag holds no cell that trimming would change.
 *
 * When well_formed is False, records and ragged are 0 and spaced all 3: the caller falls back to its exact,
 * slower reading.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

/* True when the text content..last (inclusive, not empty) ends with a whitespace character (Rust's
 * char::is_whitespace, what polars' strip_chars strips); `space_end` has already said its last byte can end one. */
static int ends_in_space(const unsigned char *content, const unsigned char *last) {
    unsigned char c = *last;
    if (c < 0x80) {
        return 1; /* ASCII space or 9-13 */
    }
    size_t n = (size_t)(last - content) + 1;
    if (n >= 2 && last[-1] == 0xC2) {
        return c == 0x85 || c == 0xA0;
    }
    if (n < 3) {
        return 0;
    }
    unsigned char a = last[-2], b = last[-1];
    return (a == 0xE1 && b == 0x9A && c == 0x80) ||
           (a == 0xE2 && b == 0x80 && (c <= 0x8A || c == 0xA8 || c == 0xA9 || c == 0xAF)) ||
           (a == 0xE2 && b == 0x81 && c == 0x9F) || (a == 0xE3 && b == 0x80 && c == 0x80);
}

static PyObject *scan(PyObject *self, PyObject *args) {
    Py_buffer buf;
    int sep;
    Py_ssize_t width;
    if (!PyArg_ParseTuple(args, "y*Cn", &buf, &sep, &width)) {
        return NULL;
    }
    if (sep < 1 || sep > 127 || sep == '"' || sep == '\n' || sep == '\r') {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_ValueError, "sep must be one ASCII character other than a quote or a line end");
        return NULL;
    }
    const unsigned char *p = (const unsigned char *)buf.buf;
    const unsigned char *end = p + buf.len;
    const unsigned char s = (unsigned char)sep;
    if (width < 1) {
        width = 1;
    }
    unsigned char *spaced = PyMem_Calloc((size_t)width, 1);
    if (spaced == NULL) {
        PyBuffer_Release(&buf);
        return PyErr_NoMemory();
    }
    unsigned char space[256] = {0}; /* bytes that can start a whitespace character */
    space[' '] = space['\t'] = space['\n'] = space['\v'] = space['\f'] = space['\r'] = 1;
    space[0xC2] = space[0xE1] = space[0xE2] = space[0xE3] = 1;
    unsigned char space_end[256] = {0}; /* bytes that can end a whitespace character */
    space_end[' '] = space_end['\t'] = space_end['\n'] = space_end['\v'] = space_end['\f'] = space_end['\r'] = 1;
    for (int c = 0x80; c <= 0x8A; c++) {
        space_end[c] = 1;
    }
    space_end[0x9F] = space_end[0xA0] = space_end[0xA8] = space_end[0xA9] = space_end[0xAF] = 1;
    int ok = 1;
    long long records = 0, ragged = 0;
    unsigned char stop[256] = {0}; /* the bytes that end an unquoted stretch */
    stop[s] = stop['\n'] = stop['"'] = 1;

    Py_BEGIN_ALLOW_THREADS
    const unsigned char *line = p; /* start of the current record */
    Py_ssize_t fields = 1;
    while (p < end) {
        if (*p == '"') { /* a quoted field: up to its closing quote */
            p++;
            const unsigned char *content = p;
            if (p < end && (space[*p] || *p == '"') && fields <= width) { /* "" is read as an empty text */
                spaced[fields - 1] |= 1;
            }
            for (;;) {
                const unsigned char *q = memchr(p, '"', (size_t)(end - p));
                if (q == NULL) { /* never closed */
                    ok = 0;
                    goto done;
                }
                if (q + 1 < end && q[1] == '"') { /* "" inside: a literal quote */
                    p = q + 2;
                    continue;
                }
                p = q + 1;
                break;
            }
            if (p - 1 > content && space_end[p[-2]] && fields <= width && ends_in_space(content, p - 2)) {
                spaced[fields - 1] |= 2;
            }
            if (p == end) {
                break;
            }
            if (*p == '\r' && p + 1 < end && p[1] == '\n') {
                p++;
            }
            if (*p != s && *p != '\n') { /* text after the closing quote */
                ok = 0;
                goto done;
            }
        } else { /* an unquoted field: up to the delimiter or the line end */
            const unsigned char *content = p;
            int line_end = *p == '\n' || (*p == '\r' && p + 1 < end && p[1] == '\n');
            if (space[*p] && !line_end && fields <= width) {
                spaced[fields - 1] |= 1;
            }
            while (p < end && !stop[*p]) {
                p++;
            }
            const unsigned char *last = p - 1; /* the field's last byte, a line end's '\r' aside */
            if (p < end && *p == '\n' && last >= content && *last == '\r') {
                last--;
            }
            if (last >= content && space_end[*last] && fields <= width && ends_in_space(content, last)) {
                spaced[fields - 1] |= 2;
            }
            if (p == end) {
                break;
            }
            if (*p == '"') { /* a quote inside an unquoted field */
                ok = 0;
                goto done;
            }
        }
        if (*p == s) {
            fields++;
            p++;
            continue;
        }
        /* *p == '\n': the record ends */
        Py_ssize_t length = p - line;
        int empty = length == 0 || (length == 1 && line[0] == '\r');
        if (fields != width && !empty) {
            ragged++;
        }
        records++;
        p++;
        line = p;
        fields = 1;
    }
    if (line < end) { /* a last record without a line end */
        if (fields != width) {
            ragged++;
        }
        records++;
    }
done:
    Py_END_ALLOW_THREADS

    PyBuffer_Release(&buf);
    if (!ok) {
        records = 0;
        ragged = 0;
        memset(spaced, 3, (size_t)width);
    }
    PyObject *result =
        Py_BuildValue("(OLLy#)", ok ? Py_True : Py_False, records, ragged, (const char *)spaced, width);
    PyMem_Free(spaced);
    return result;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS, "scan(data, sep, width) -> (well_formed, records, ragged, spaced)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_csvscan", "One-pass check of the quoting and field counts of delimited text.", -1, methods,
};

PyMODINIT_FUNC PyInit__csvscan(void) { return PyModule_Create(&module); }

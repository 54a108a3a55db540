/* safetensors.c: reading and atomically writing safetensors files, strictly validated. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/internal.h"
#include "atomic_file.h"
#include "json.h"

#define MAX_HEADER (100 << 20)

typedef struct {
  char *name;
  ms_dtype dtype;
  int ndim;
  int64_t shape[MS_MAX_DIMS];
  int64_t begin, end; /* within the data section */
} entry;

struct ms_safetensors {
  char *file;  /* for error messages */
  char *bytes; /* the whole file */
  int64_t nbytes;
  int64_t data_start;
  int n;
  entry *entries;
  int n_meta;
  char **meta_keys, **meta_values;
};

static const struct {
  const char *name;
  ms_dtype dtype;
} dtype_names[] = {{"F64", MS_F64}, {"F32", MS_F32}, {"F16", MS_F16}, {"BF16", MS_BF16},
                   {"I64", MS_I64}, {"I32", MS_I32}, {"U8", MS_U8},   {"BOOL", MS_BOOL}};

static const char *st_dtype_name(ms_dtype d) {
  for (size_t i = 0; i < sizeof dtype_names / sizeof *dtype_names; i++)
    if (dtype_names[i].dtype == d) return dtype_names[i].name;
  return "?";
}

void ms_safetensors_close(ms_safetensors *st) {
  if (!st) return;
  for (int i = 0; i < st->n; i++)
    free(st->entries[i].name);
  for (int i = 0; i < st->n_meta; i++) {
    free(st->meta_keys[i]);
    free(st->meta_values[i]);
  }
  free(st->entries);
  free(st->meta_keys);
  free(st->meta_values);
  free(st->bytes);
  free(st->file);
  free(st);
}

static int cmp_begin(const void *a, const void *b) {
  const entry *x = *(entry *const *)a, *y = *(entry *const *)b;
  return x->begin < y->begin ? -1 : x->begin > y->begin;
}

static int bad(const ms_safetensors *st, const char *fmt, const char *detail) {
  char msg[512];
  snprintf(msg, sizeof msg, fmt, detail ? detail : "");
  return ms_fail(MS_ERR_IO, "safetensors %s: %s", st->file, msg);
}

static int parse_entry(ms_safetensors *st, const char *key, const ms_json *v, entry *e) {
  if (v->type != MS_JSON_OBJ) return bad(st, "entry '%s' is not an object", key);
  const ms_json *dt = ms_json_get(v, "dtype"), *shape = ms_json_get(v, "shape"),
                *off = ms_json_get(v, "data_offsets");
  if (!dt || dt->type != MS_JSON_STR) return bad(st, "entry '%s' has no dtype string", key);
  int found = 0;
  for (size_t i = 0; i < sizeof dtype_names / sizeof *dtype_names; i++)
    if (!strcmp(dt->str, dtype_names[i].name)) e->dtype = dtype_names[i].dtype, found = 1;
  if (!found) {
    char d[300];
    snprintf(d, sizeof d, "%s' has dtype '%s', which moonseg does not support", key, dt->str);
    return bad(st, "entry '%s", d);
  }
  if (!shape || shape->type != MS_JSON_ARR || shape->n > MS_MAX_DIMS)
    return bad(st, "entry '%s' has no shape list of at most 8 dims", key);
  e->ndim = shape->n;
  int64_t numel = 1;
  for (int i = 0; i < shape->n; i++) {
    const ms_json *d = shape->items[i];
    if (d->type != MS_JSON_NUM || !d->is_int || d->ival < 0 || d->ival > ((int64_t)1 << 40))
      return bad(st, "entry '%s' has a bad dimension", key);
    e->shape[i] = d->ival;
    numel *= d->ival;
    if (numel > ((int64_t)1 << 40)) return bad(st, "entry '%s' is too large", key);
  }
  if (!off || off->type != MS_JSON_ARR || off->n != 2)
    return bad(st, "entry '%s' needs data_offsets [begin, end]", key);
  for (int i = 0; i < 2; i++)
    if (off->items[i]->type != MS_JSON_NUM || !off->items[i]->is_int || off->items[i]->ival < 0)
      return bad(st, "entry '%s' has bad data_offsets", key);
  e->begin = off->items[0]->ival;
  e->end = off->items[1]->ival;
  if (e->end < e->begin || e->end - e->begin != numel * ms_dtype_size(e->dtype)) {
    char d[300];
    snprintf(d, sizeof d, "%s' spans %lld bytes but shape and dtype need %lld", key,
             (long long)(e->end - e->begin), (long long)(numel * ms_dtype_size(e->dtype)));
    return bad(st, "entry '%s", d);
  }
  return MS_OK;
}

static int parse_header(ms_safetensors *st, const ms_json *h) {
  if (h->type != MS_JSON_OBJ) return bad(st, "header is not a JSON object%s", NULL);
  st->entries = calloc((size_t)h->n + 1, sizeof *st->entries);
  if (!st->entries) return ms_fail(MS_ERR_OOM, "safetensors %s: out of memory", st->file);
  for (int i = 0; i < h->n; i++) {
    const char *key = h->keys[i];
    for (int j = 0; j < i; j++)
      if (!strcmp(h->keys[j], key)) return bad(st, "duplicate entry '%s'", key);
    if (!strcmp(key, "__metadata__")) {
      const ms_json *m = h->items[i];
      if (m->type != MS_JSON_OBJ) return bad(st, "__metadata__ is not an object%s", NULL);
      st->meta_keys = calloc((size_t)m->n + 1, sizeof(char *));
      st->meta_values = calloc((size_t)m->n + 1, sizeof(char *));
      if (!st->meta_keys || !st->meta_values)
        return ms_fail(MS_ERR_OOM, "safetensors: out of memory");
      for (int k = 0; k < m->n; k++) {
        if (m->items[k]->type != MS_JSON_STR)
          return bad(st, "metadata value of '%s' is not a string", m->keys[k]);
        st->meta_keys[k] = strdup(m->keys[k]);
        st->meta_values[k] = strdup(m->items[k]->str);
        st->n_meta = k + 1;
        if (!st->meta_keys[k] || !st->meta_values[k])
          return ms_fail(MS_ERR_OOM, "safetensors: out of memory");
      }
      continue;
    }
    entry *e = &st->entries[st->n];
    int rc = parse_entry(st, key, h->items[i], e);
    if (rc) return rc;
    if (!(e->name = strdup(key))) return ms_fail(MS_ERR_OOM, "safetensors: out of memory");
    st->n++;
  }
  /* The entries must tile the data section: sorted by offset, no gap, no overlap. */
  entry **order = malloc(sizeof *order * ((size_t)st->n + 1));
  if (!order) return ms_fail(MS_ERR_OOM, "safetensors: out of memory");
  for (int i = 0; i < st->n; i++)
    order[i] = &st->entries[i];
  qsort(order, (size_t)st->n, sizeof *order, cmp_begin);
  int64_t at = 0;
  int rc = MS_OK;
  for (int i = 0; i < st->n && !rc; i++) {
    if (order[i]->begin != at) {
      char d[300];
      snprintf(d, sizeof d,
               "%s' starts at byte %lld of the data but the previous entry ends at %lld (%s)",
               order[i]->name, (long long)order[i]->begin, (long long)at,
               order[i]->begin < at ? "overlap" : "gap");
      rc = bad(st, "entry '%s", d);
    }
    at = order[i]->end;
  }
  free(order);
  if (rc) return rc;
  int64_t data = st->nbytes - st->data_start;
  if (at != data) {
    char d[200];
    snprintf(d, sizeof d, "entries cover %lld bytes but the data section has %lld (%s)",
             (long long)at, (long long)data, at > data ? "file truncated" : "trailing bytes");
    return bad(st, "%s", d);
  }
  return MS_OK;
}

/* Takes ownership of bytes. */
static int parse_owned(char *bytes, int64_t nbytes, const char *name, ms_safetensors **out) {
  ms_safetensors *st = calloc(1, sizeof *st);
  if (!st || !(st->file = strdup(name ? name : "(memory)"))) {
    free(st);
    free(bytes);
    return ms_fail(MS_ERR_OOM, "safetensors: out of memory");
  }
  st->bytes = bytes;
  st->nbytes = nbytes;
  int rc = MS_OK;
  if (nbytes < 8) {
    rc = bad(st, "file of %s bytes is too short for the 8-byte header length",
             nbytes == 0 ? "0" : "< 8");
  } else {
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
      hlen = (hlen << 8) | (unsigned char)bytes[i];
    if (hlen > MAX_HEADER || (int64_t)hlen > nbytes - 8) {
      char d[160];
      snprintf(d, sizeof d, "header length %llu does not fit in a file of %lld bytes",
               (unsigned long long)hlen, (long long)nbytes);
      rc = bad(st, "%s", d);
    } else if (hlen == 0 || bytes[8] != '{') {
      rc = bad(st, "header does not start with '{'%s", NULL);
    } else {
      st->data_start = 8 + (int64_t)hlen;
      char err[200];
      ms_json *h = ms_json_parse(bytes + 8, (int64_t)hlen, err, sizeof err);
      if (!h)
        rc = bad(st, "header is not valid JSON: %s", err);
      else {
        rc = parse_header(st, h);
        ms_json_free(h);
      }
    }
  }
  if (rc) {
    ms_safetensors_close(st);
    return rc;
  }
  *out = st;
  return MS_OK;
}

int ms_safetensors_parse(const void *data, int64_t nbytes, const char *name, ms_safetensors **out) {
  if (!out || (!data && nbytes)) return ms_fail(MS_ERR_INVALID, "safetensors_parse: NULL argument");
  char *copy = malloc((size_t)nbytes + 1);
  if (!copy)
    return ms_fail(MS_ERR_OOM, "safetensors: out of memory for %lld bytes", (long long)nbytes);
  if (nbytes) memcpy(copy, data, (size_t)nbytes);
  return parse_owned(copy, nbytes, name, out);
}

int ms_safetensors_open(const char *path, ms_safetensors **out) {
  if (!path || !out) return ms_fail(MS_ERR_INVALID, "safetensors_open: NULL argument");
  FILE *f = fopen(path, "rb");
  if (!f) return ms_fail(MS_ERR_IO, "safetensors %s: cannot open: %s", path, strerror(errno));
  char *bytes = NULL;
  int64_t n = 0;
  int rc = ms_read_whole(f, path, &bytes, &n);
  fclose(f);
  if (rc) return rc;
  return parse_owned(bytes, n, path, out);
}

int ms_safetensors_count(const ms_safetensors *st) { return st ? st->n : 0; }
const char *ms_safetensors_name(const ms_safetensors *st, int i) {
  return st && i >= 0 && i < st->n ? st->entries[i].name : NULL;
}
int ms_safetensors_metadata_count(const ms_safetensors *st) { return st ? st->n_meta : 0; }
const char *ms_safetensors_metadata_key(const ms_safetensors *st, int i) {
  return st && i >= 0 && i < st->n_meta ? st->meta_keys[i] : NULL;
}
const char *ms_safetensors_metadata_value(const ms_safetensors *st, int i) {
  return st && i >= 0 && i < st->n_meta ? st->meta_values[i] : NULL;
}

int ms_safetensors_get(ms_context *ctx, const ms_safetensors *st, int i, ms_tensor **out) {
  (void)ctx;
  if (!st || i < 0 || i >= st->n)
    return ms_fail(MS_ERR_INVALID, "safetensors_get: index %d out of range (%d entries)", i,
                   st ? st->n : 0);
  const entry *e = &st->entries[i];
  ms_tensor *t;
  int rc = ms_tensor_new(e->shape, e->ndim, e->dtype, MS_CPU, 0, &t);
  if (rc) return rc;
  if (e->end > e->begin)
    memcpy(t->storage->data, st->bytes + st->data_start + e->begin, (size_t)(e->end - e->begin));
  if (e->dtype == MS_BOOL) { /* only 0/1 are valid bools */
    uint8_t *b = t->storage->data;
    for (int64_t k = 0; k < e->end - e->begin; k++)
      b[k] = b[k] != 0;
  }
  *out = t;
  return MS_OK;
}

/* Appends a JSON string literal of s to buf. */
static void json_string(ms_buf *b, const char *s) {
  ms_buf_put(b, "\"", 1);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    char esc[8];
    if (*p == '"' || *p == '\\') {
      esc[0] = '\\', esc[1] = (char)*p;
      ms_buf_put(b, esc, 2);
    } else if (*p < 0x20) {
      snprintf(esc, sizeof esc, "\\u%04x", *p);
      ms_buf_put(b, esc, 6);
    } else {
      ms_buf_put(b, (const char *)p, 1);
    }
  }
  ms_buf_put(b, "\"", 1);
}

int ms_safetensors_save(ms_context *ctx, const char *path, const char *const *names,
                        ms_tensor *const *tensors, int n, const char *const *meta_keys,
                        const char *const *meta_values, int n_meta) {
  if (!path || n < 0 || (n && (!names || !tensors)) || n_meta < 0 ||
      (n_meta && (!meta_keys || !meta_values)))
    return ms_fail(MS_ERR_INVALID, "safetensors_save: bad arguments");
  for (int i = 0; i < n; i++) {
    if (!names[i] || !tensors[i])
      return ms_fail(MS_ERR_INVALID, "safetensors_save %s: entry %d is NULL", path, i);
    if (!strcmp(names[i], "__metadata__"))
      return ms_fail(MS_ERR_INVALID, "safetensors_save %s: '__metadata__' is reserved", path);
    for (int j = 0; j < i; j++)
      if (!strcmp(names[i], names[j]))
        return ms_fail(MS_ERR_INVALID, "safetensors_save %s: duplicate name '%s'", path, names[i]);
  }
  ms_buf h = {0};
  ms_buf_put(&h, "{", 1);
  int first = 1;
  if (n_meta) {
    ms_buf_put(&h, "\"__metadata__\":{", 16);
    for (int i = 0; i < n_meta; i++) {
      if (i) ms_buf_put(&h, ",", 1);
      json_string(&h, meta_keys[i]);
      ms_buf_put(&h, ":", 1);
      json_string(&h, meta_values[i]);
    }
    ms_buf_put(&h, "}", 1);
    first = 0;
  }
  int64_t at = 0;
  for (int i = 0; i < n; i++) {
    const ms_tensor *t = tensors[i];
    int64_t bytes = ms_numel(t) * ms_dtype_size(t->dtype);
    char tmp[400];
    if (!first) ms_buf_put(&h, ",", 1);
    first = 0;
    json_string(&h, names[i]);
    int k = snprintf(tmp, sizeof tmp, ":{\"dtype\":\"%s\",\"shape\":[", st_dtype_name(t->dtype));
    for (int d = 0; d < t->ndim; d++)
      k += snprintf(tmp + k, sizeof tmp - (size_t)k, d ? ",%lld" : "%lld", (long long)t->shape[d]);
    k += snprintf(tmp + k, sizeof tmp - (size_t)k, "],\"data_offsets\":[%lld,%lld]}", (long long)at,
                  (long long)(at + bytes));
    ms_buf_put(&h, tmp, (size_t)k);
    at += bytes;
  }
  ms_buf_put(&h, "}", 1);
  while (h.len % 8)
    ms_buf_put(&h, " ", 1); /* keeps the data section 8-byte aligned */
  if (h.failed) {
    free(h.data);
    return ms_fail(MS_ERR_OOM, "safetensors_save %s: out of memory", path);
  }
  ms_atomic_file af;
  int rc = ms_atomic_open(&af, path);
  if (rc) {
    free(h.data);
    return rc;
  }
  unsigned char len8[8];
  for (int i = 0; i < 8; i++)
    len8[i] = (unsigned char)((uint64_t)h.len >> (8 * i));
  rc = ms_atomic_write(&af, len8, 8);
  if (!rc) rc = ms_atomic_write(&af, h.data, (int64_t)h.len);
  free(h.data);
  for (int i = 0; i < n && !rc; i++) {
    const ms_tensor *t = tensors[i];
    int64_t bytes = ms_numel(t) * ms_dtype_size(t->dtype);
    if (!bytes) continue;
    void *host = malloc((size_t)bytes);
    if (!host) {
      rc = ms_fail(MS_ERR_OOM, "safetensors_save %s: out of memory for '%s'", path, names[i]);
      break;
    }
    rc = ms_to_host(ctx, t, host, bytes);
    if (!rc) rc = ms_atomic_write(&af, host, bytes);
    free(host);
  }
  if (rc) {
    ms_atomic_abort(&af);
    return rc;
  }
  return ms_atomic_commit(&af);
}

/* error.c: thread-local last-error message and status, shape/dtype formatting. */
#include <stdio.h>

#include "internal.h"

static _Thread_local char last_message[1024];
static _Thread_local int last_status;
static _Thread_local char desc_ring[8][192];
static _Thread_local int desc_next;

int ms_fail(int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_message, sizeof last_message, fmt, ap);
  va_end(ap);
  last_status = status;
  return status;
}

const char *ms_last_error(void) { return last_message; }
int ms_last_status(void) { return last_status; }
void ms_clear_error(void) {
  last_message[0] = 0;
  last_status = 0;
}

static char *next_buffer(void) {
  char *b = desc_ring[desc_next];
  desc_next = (desc_next + 1) % 8;
  return b;
}

static int format_shape(char *b, size_t cap, const int64_t *shape, int ndim) {
  int n = snprintf(b, cap, "[");
  for (int i = 0; i < ndim && (size_t)n < cap; i++)
    n += snprintf(b + n, cap - n, i ? ", %lld" : "%lld", (long long)shape[i]);
  if ((size_t)n < cap) n += snprintf(b + n, cap - n, "]");
  return n;
}

const char *ms_shape_str(const int64_t *shape, int ndim) {
  char *b = next_buffer();
  format_shape(b, 192, shape, ndim);
  return b;
}

const char *ms_desc(const ms_tensor *t) {
  char *b = next_buffer();
  if (!t) {
    snprintf(b, 192, "(null)");
    return b;
  }
  int n = format_shape(b, 192, t->shape, t->ndim);
  if (n < 192) /* the device is named unless it is the default cpu:0 */
    snprintf(b + n, 192 - n, " %s%s%s", ms_dtype_name(t->dtype),
             t->storage && (t->storage->device != MS_CPU || t->storage->device_index) ? " " : "",
             t->storage && (t->storage->device != MS_CPU || t->storage->device_index)
                 ? ms_device_str(t->storage->device, t->storage->device_index)
                 : "");
  return b;
}

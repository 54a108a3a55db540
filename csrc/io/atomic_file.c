/* atomic_file.c: atomic file replacement and whole-file reads. */
#include "atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/internal.h"

int ms_atomic_open(ms_atomic_file *f, const char *path) {
  memset(f, 0, sizeof *f);
  f->fd = -1;
  size_t n = strlen(path);
  f->path = strdup(path);
  f->tmp = malloc(n + 32);
  if (!f->path || !f->tmp) {
    free(f->path);
    free(f->tmp);
    return ms_fail(MS_ERR_OOM, "%s: out of memory", path);
  }
  snprintf(f->tmp, n + 32, "%s.tmp.%ld", path, (long)getpid());
  f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (f->fd < 0) {
    int e = errno;
    free(f->path);
    free(f->tmp);
    return ms_fail(MS_ERR_IO, "cannot write %s: %s", path, strerror(e));
  }
  return MS_OK;
}

int ms_atomic_write(ms_atomic_file *f, const void *data, int64_t n) {
  const char *p = data;
  while (n > 0) {
    ssize_t w = write(f->fd, p, (size_t)n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return ms_fail(MS_ERR_IO, "writing %s: %s", f->path, strerror(errno));
    }
    p += w;
    n -= w;
  }
  return MS_OK;
}

static void release(ms_atomic_file *f) {
  free(f->path);
  free(f->tmp);
  f->path = f->tmp = NULL;
}

void ms_atomic_abort(ms_atomic_file *f) {
  if (f->fd >= 0) close(f->fd);
  f->fd = -1;
  if (f->tmp) unlink(f->tmp);
  release(f);
}

int ms_atomic_commit(ms_atomic_file *f) {
  if (fsync(f->fd) != 0) {
    int e = errno;
    ms_atomic_abort(f);
    return ms_fail(MS_ERR_IO, "fsync of a temporary for %s failed: %s", f->path, strerror(e));
  }
  close(f->fd);
  f->fd = -1;
  if (rename(f->tmp, f->path) != 0) {
    int e = errno;
    char *path = f->path;
    f->path = NULL;
    ms_atomic_abort(f);
    int rc = ms_fail(MS_ERR_IO, "cannot rename onto %s: %s", path, strerror(e));
    free(path);
    return rc;
  }
  /* Make the rename itself durable. */
  char *dup = strdup(f->path);
  if (dup) {
    int dfd = open(dirname(dup), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      fsync(dfd);
      close(dfd);
    }
    free(dup);
  }
  release(f);
  return MS_OK;
}

int ms_read_whole(FILE *f, const char *name, char **out, int64_t *n) {
  size_t cap = 1 << 16, len = 0;
  char *b = malloc(cap + 1);
  if (!b) return ms_fail(MS_ERR_OOM, "%s: out of memory", name);
  for (;;) {
    if (len == cap) {
      char *nb = realloc(b, cap * 2 + 1);
      if (!nb) {
        free(b);
        return ms_fail(MS_ERR_OOM, "%s: out of memory reading %zu bytes", name, cap * 2);
      }
      b = nb;
      cap *= 2;
    }
    size_t r = fread(b + len, 1, cap - len, f);
    len += r;
    if (r == 0) break;
  }
  if (ferror(f)) {
    free(b);
    return ms_fail(MS_ERR_IO, "%s: read error", name);
  }
  b[len] = 0;
  *out = b;
  *n = (int64_t)len;
  return MS_OK;
}

void ms_buf_put(ms_buf *b, const char *s, size_t n) {
  if (b->failed) return;
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 256;
    while (cap < b->len + n)
      cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d) {
      b->failed = 1;
      return;
    }
    b->data = d;
    b->cap = cap;
  }
  memcpy(b->data + b->len, s, n);
  b->len += n;
}

int ms_file_write_atomic(const char *path, const void *data, int64_t nbytes) {
  if (!path || (!data && nbytes) || nbytes < 0)
    return ms_fail(MS_ERR_INVALID, "file_write_atomic: bad arguments");
  ms_atomic_file f;
  int rc = ms_atomic_open(&f, path);
  if (rc) return rc;
  rc = ms_atomic_write(&f, data, nbytes);
  if (rc) {
    ms_atomic_abort(&f);
    return rc;
  }
  return ms_atomic_commit(&f);
}

/* atomic_file.h: write-to-temporary, fsync, rename — files that are either whole or absent. */
#ifndef MS_ATOMIC_FILE_H
#define MS_ATOMIC_FILE_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct {
  char *path, *tmp;
  int fd;
} ms_atomic_file;

int ms_atomic_open(ms_atomic_file *f, const char *path);
int ms_atomic_write(ms_atomic_file *f, const void *data, int64_t n);
/* fsync, rename over the target, fsync the directory. */
int ms_atomic_commit(ms_atomic_file *f);
/* Removes the temporary; the target is untouched. */
void ms_atomic_abort(ms_atomic_file *f);

/* Reads a whole stream into a malloc'd buffer (NUL-terminated for convenience). */
int ms_read_whole(FILE *f, const char *name, char **out, int64_t *n);

/* A growable byte buffer; failed is set on allocation failure. */
typedef struct {
  char *data;
  size_t len, cap;
  int failed;
} ms_buf;
void ms_buf_put(ms_buf *b, const char *s, size_t n);

#endif

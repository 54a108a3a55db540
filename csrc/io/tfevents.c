/* tfevents.c: CRC-32C and TFRecord framing for TensorBoard event files (create, append, flush). */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "../core/internal.h"

/* ---- CRC-32C (Castagnoli, reflected polynomial 0x82f63b78), slicing by 8 ---- */
static uint32_t crc_table[8][256];

static void crc_init(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++)
      c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
    crc_table[0][i] = c;
  }
  for (uint32_t i = 0; i < 256; i++)
    for (int t = 1; t < 8; t++)
      crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
}

static pthread_once_t crc_once = PTHREAD_ONCE_INIT;
static void crc_ready(void) { pthread_once(&crc_once, crc_init); }

uint32_t ms_crc32c(uint32_t crc, const void *data, int64_t nbytes) {
  crc_ready();
  const uint8_t *p = data;
  uint32_t c = ~crc;
  if (!p || nbytes <= 0) return crc;
  while (nbytes >= 8) {
    uint32_t lo =
        c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
    c = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^ crc_table[5][(lo >> 16) & 0xff] ^
        crc_table[4][lo >> 24] ^ crc_table[3][p[4]] ^ crc_table[2][p[5]] ^ crc_table[1][p[6]] ^
        crc_table[0][p[7]];
    p += 8;
    nbytes -= 8;
  }
  while (nbytes-- > 0)
    c = (c >> 8) ^ crc_table[0][(c ^ *p++) & 0xff];
  return ~c;
}

static uint32_t masked_crc(const void *data, int64_t n) {
  uint32_t c = ms_crc32c(0, data, n);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

double ms_wall_time(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (double)tv.tv_sec + (double)tv.tv_usec * 1e-6;
}

/* ---- event files ---- */
struct ms_tfevents {
  FILE *f;
  char *path;
};

static void put_le(uint8_t *dst, uint64_t v, int n) {
  for (int i = 0; i < n; i++)
    dst[i] = (uint8_t)(v >> (8 * i));
}

int ms_tfevents_open(const char *path, ms_tfevents **out) {
  const char *op = "tfevents_open";
  if (!path || !out) return ms_fail(MS_ERR_INVALID, "%s: path or out is NULL", op);
  *out = NULL;
  ms_tfevents *w = calloc(1, sizeof *w);
  char *p = strdup(path);
  if (!w || !p) {
    free(w);
    free(p);
    return ms_fail(MS_ERR_OOM, "%s: out of memory", op);
  }
  w->f = fopen(path, "ab");
  if (!w->f) {
    int e = errno;
    free(w);
    free(p);
    return ms_fail(MS_ERR_IO, "%s: cannot open %s for appending: %s", op, path, strerror(e));
  }
  w->path = p;
  *out = w;
  return MS_OK;
}

/* mkdir -p */
static int make_dirs(const char *op, const char *dir) {
  size_t n = strlen(dir);
  char *buf = malloc(n + 1);
  if (!buf) return ms_fail(MS_ERR_OOM, "%s: out of memory", op);
  memcpy(buf, dir, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (buf[i] != '/' && buf[i] != '\0') continue;
    char keep = buf[i];
    buf[i] = '\0';
    if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
      int e = errno;
      int st = ms_fail(MS_ERR_IO, "%s: cannot create directory %s: %s", op, buf, strerror(e));
      free(buf);
      return st;
    }
    buf[i] = keep;
  }
  free(buf);
  struct stat sb;
  if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
    return ms_fail(MS_ERR_IO, "%s: %s is not a directory", op, dir);
  return MS_OK;
}

int ms_tfevents_create(const char *logdir, const char *suffix, ms_tfevents **out) {
  const char *op = "tfevents_create";
  if (!logdir || !*logdir || !out) return ms_fail(MS_ERR_INVALID, "%s: logdir or out missing", op);
  *out = NULL;
  int st = make_dirs(op, logdir);
  if (st) return st;
  char host[256];
  if (gethostname(host, sizeof host) != 0) strcpy(host, "localhost");
  host[sizeof host - 1] = '\0';
  for (char *c = host; *c; c++)
    if (*c == '/') *c = '_';
  static int counter;
  int n = __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED);
  size_t cap = strlen(logdir) + strlen(host) + (suffix ? strlen(suffix) : 0) + 96;
  char *path = malloc(cap);
  if (!path) return ms_fail(MS_ERR_OOM, "%s: out of memory", op);
  snprintf(path, cap, "%s/events.out.tfevents.%010lld.%s.%d.%d%s", logdir, (long long)time(NULL),
           host, (int)getpid(), n, suffix ? suffix : "");
  /* "x": a new file only, never another writer's */
  FILE *f = fopen(path, "wbx");
  if (!f) {
    int e = errno;
    st = ms_fail(MS_ERR_IO, "%s: cannot create %s: %s", op, path, strerror(e));
    free(path);
    return st;
  }
  ms_tfevents *w = calloc(1, sizeof *w);
  if (!w) {
    fclose(f);
    remove(path);
    free(path);
    return ms_fail(MS_ERR_OOM, "%s: out of memory", op);
  }
  w->f = f;
  w->path = path;
  *out = w;
  return MS_OK;
}

const char *ms_tfevents_path(const ms_tfevents *w) { return w ? w->path : NULL; }

int ms_tfevents_write(ms_tfevents *w, const void *data, int64_t nbytes) {
  const char *op = "tfevents_write";
  if (!w || !w->f) return ms_fail(MS_ERR_INVALID, "%s: writer is NULL or closed", op);
  if (nbytes < 0 || (nbytes > 0 && !data))
    return ms_fail(MS_ERR_INVALID, "%s: bad record (%lld bytes)", op, (long long)nbytes);
  uint8_t head[12], tail[4];
  put_le(head, (uint64_t)nbytes, 8);
  put_le(head + 8, masked_crc(head, 8), 4);
  put_le(tail, masked_crc(data, nbytes), 4);
  if (fwrite(head, 1, 12, w->f) != 12 ||
      (nbytes && fwrite(data, 1, (size_t)nbytes, w->f) != (size_t)nbytes) ||
      fwrite(tail, 1, 4, w->f) != 4) {
    int e = errno;
    return ms_fail(MS_ERR_IO, "%s: writing a %lld-byte record to %s failed: %s", op,
                   (long long)nbytes, w->path, strerror(e));
  }
  return MS_OK;
}

int ms_tfevents_flush(ms_tfevents *w) {
  if (!w || !w->f) return ms_fail(MS_ERR_INVALID, "tfevents_flush: writer is NULL or closed");
  if (fflush(w->f) != 0) {
    int e = errno;
    return ms_fail(MS_ERR_IO, "tfevents_flush: %s: %s", w->path, strerror(e));
  }
  return MS_OK;
}

int ms_tfevents_close(ms_tfevents *w) {
  if (!w) return MS_OK;
  int st = MS_OK;
  if (w->f && fclose(w->f) != 0) {
    int e = errno;
    st = ms_fail(MS_ERR_IO, "tfevents_close: %s: %s", w->path, strerror(e));
  }
  free(w->path);
  free(w);
  return st;
}

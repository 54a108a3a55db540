/* shm_ring.c: shared-memory byte rings between the ranks of one host, with futex doorbells. */
#define _GNU_SOURCE
#include "comm/shm_ring.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/comm.h"

#ifdef __linux__
#include <dirent.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#endif

#define SHM_MAGIC 0x6d73686du /* "mshm" */
#define GRANULE                                                                                    \
  ((size_t)256 << 10) /* bytes moved before the peer is told: pipelines copy-in/out                \
                       */
#define TICK_MS 10    /* liveness and deadline checks while waiting */
#define YIELD_MS 2    /* longest stretch of yielding before sleeping */

/* The segment's header; the ring's bytes follow at DATA_OFF. Counters count bytes mod 2^32
 * (the capacity is a power of two, so positions are counter % cap). */
typedef struct shm_hdr {
  uint32_t magic, cap;
  char pad0[56];
  _Atomic uint32_t bell;     /* the owner's doorbell: bumped by whoever made progress for it */
  _Atomic uint32_t sleeping; /* 1 while the owner sleeps on bell */
  char pad1[56];
  _Atomic uint32_t head; /* bytes written by the previous rank */
  char pad2[60];
  _Atomic uint32_t tail; /* bytes consumed by the owner */
  char pad3[60];
} shm_hdr;
#define DATA_OFF ((size_t)256)

struct ms_shm {
  shm_hdr *h;
  char *data;
  size_t cap, maplen;
  char name[96];
  int linked;
};

#ifdef __linux__

int ms_shm_supported(void) { return 1; }

static int spin_iters(void) {
  static int v = -1;
  if (v < 0) {
    const char *e = getenv("MS_COMM_SPIN");
    int x = e && *e ? atoi(e) : 300; /* a few us: longer spins mostly burnt a core (perf) */
    v = x < 0 ? 0 : x;
  }
  return v;
}

/* After spinning, how many times to give the core away (sched_yield) and look again before
 * sleeping: a peer queued on this core then runs at once, and a wake-up is saved (on the 2-core
 * machine under load, 2 workers x 2 of PP-LiteSeg: blocked time per step ~100 -> ~25 ms in most
 * runs; a longer pure spin instead held the core the peer needed, up to 0.8 s per step). */
static int yield_iters(void) {
  static int v = -1;
  if (v < 0) {
    const char *e = getenv("MS_COMM_YIELD");
    int x = e && *e ? atoi(e) : 1000; /* ~1 ms when nothing else runs here */
    v = x < 0 ? 0 : x;
  }
  return v;
}

static int map_fd(int fd, size_t len, const char *name, ms_shm **out) {
  void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED)
    return ms_fail(MS_ERR_IO, "shared-memory transport: cannot map %s (%zu bytes): %s", name, len,
                   strerror(errno));
  ms_shm *s = calloc(1, sizeof *s);
  if (!s) {
    munmap(p, len);
    return ms_fail(MS_ERR_OOM, "shared-memory transport: out of memory");
  }
  s->h = p;
  s->data = (char *)p + DATA_OFF;
  s->maplen = len;
  snprintf(s->name, sizeof s->name, "%s", name);
  *out = s;
  return 0;
}

int ms_shm_create(const char *tag, size_t cap, ms_shm **out, char *name, size_t namecap) {
  static _Atomic unsigned counter;
  size_t c = 4096;
  while (c < cap && c < ((size_t)1 << 30))
    c <<= 1;
  char nm[96];
  int fd = -1;
  for (int tries = 0; tries < 16 && fd < 0; tries++) {
    snprintf(nm, sizeof nm, "/moonseg-%d-%s-%u", (int)getpid(), tag, atomic_fetch_add(&counter, 1));
    fd = shm_open(nm, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0)
    return ms_fail(MS_ERR_IO, "shared-memory transport: cannot create %s: %s", nm, strerror(errno));
  size_t len = DATA_OFF + c;
  /* fallocate, not ftruncate alone: a full /dev/shm (containers often give it 64 MB) must fail
   * here, where auto mode falls back to TCP, not as a SIGBUS on the first write into the ring */
  int fe = ftruncate(fd, (off_t)len) != 0 ? errno : posix_fallocate(fd, 0, (off_t)len);
  if (fe != 0) {
    int e = fe;
    close(fd);
    shm_unlink(nm);
    return ms_fail(MS_ERR_IO, "shared-memory transport: cannot size %s to %zu bytes: %s", nm, len,
                   strerror(e));
  }
  int st = map_fd(fd, len, nm, out);
  close(fd);
  if (st) {
    shm_unlink(nm);
    return st;
  }
  ms_shm *s = *out;
  s->cap = c;
  s->linked = 1;
  s->h->cap = (uint32_t)c;
  s->h->magic = SHM_MAGIC; /* the rest is zero (a fresh file) */
  snprintf(name, namecap, "%s", nm);
  return 0;
}

int ms_shm_open(const char *name, ms_shm **out) {
  int fd = shm_open(name, O_RDWR | O_CLOEXEC, 0);
  if (fd < 0)
    return ms_fail(MS_ERR_IO, "shared-memory transport: cannot open %s: %s", name, strerror(errno));
  struct stat sb;
  if (fstat(fd, &sb) != 0 || (size_t)sb.st_size <= DATA_OFF) {
    close(fd);
    return ms_fail(MS_ERR_IO, "shared-memory transport: %s is too small", name);
  }
  int st = map_fd(fd, (size_t)sb.st_size, name, out);
  close(fd);
  if (st) return st;
  ms_shm *s = *out;
  if (s->h->magic != SHM_MAGIC || (size_t)s->h->cap != s->maplen - DATA_OFF) {
    ms_shm_close(s);
    *out = NULL;
    return ms_fail(MS_ERR_IO, "shared-memory transport: %s is not a moonseg ring", name);
  }
  s->cap = s->h->cap;
  return 0;
}

void ms_shm_unlink(ms_shm *s) {
  if (s && s->linked) {
    shm_unlink(s->name);
    s->linked = 0;
  }
}

/* Names are /moonseg-<creator pid>-<tag>-<n> (ms_shm_create); shm_open keeps them in /dev/shm. */
int ms_comm_remove_segments(int pid) {
  char prefix[32];
  int plen = snprintf(prefix, sizeof prefix, "moonseg-%d-", pid), removed = 0;
  DIR *d = opendir("/dev/shm");
  if (!d) return 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (!strncmp(e->d_name, prefix, (size_t)plen)) {
      char nm[300];
      snprintf(nm, sizeof nm, "/%s", e->d_name);
      if (shm_unlink(nm) == 0) removed++;
    }
  closedir(d);
  return removed;
}

void ms_shm_close(ms_shm *s) {
  if (!s) return;
  ms_shm_unlink(s);
  munmap(s->h, s->maplen);
  free(s);
}

static void futex_wait(_Atomic uint32_t *w, uint32_t val, int64_t ms) {
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT, val, &ts, NULL, 0);
}

/* Tells s's owner that it may proceed; a system call only when it sleeps. */
static void ring_bell(ms_shm *s) {
  atomic_fetch_add(&s->h->bell, 1);
  if (atomic_load(&s->h->sleeping))
    syscall(SYS_futex, (uint32_t *)&s->h->bell, FUTEX_WAKE, 1, NULL, NULL, 0);
}

static void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

static size_t pad8(size_t n) { return (n + 7) & ~(size_t)7; }
static size_t min3(size_t a, size_t b, size_t c) {
  size_t m = a < b ? a : b;
  return m < c ? m : c;
}

/* Hands n ring bytes starting at counter position pos to the receiver (two pieces at the wrap). */
static void deliver(ms_shm *s, uint32_t pos, size_t n, char *rp, size_t off,
                    const ms_shm_sink *sink) {
  size_t at = pos & (s->cap - 1), first = n < s->cap - at ? n : s->cap - at;
  const char *p[2] = {s->data + at, s->data};
  size_t len[2] = {first, n - first};
  for (int k = 0; k < 2; k++) {
    if (!len[k]) continue;
    if (sink)
      sink->fn(sink->arg, off, p[k], len[k]);
    else
      memcpy(rp + off, p[k], len[k]);
    off += len[k];
  }
}

static void fill(ms_shm *s, uint32_t pos, const char *src, size_t n) {
  size_t at = pos & (s->cap - 1), first = n < s->cap - at ? n : s->cap - at;
  memcpy(s->data + at, src, first);
  if (n > first) memcpy(s->data, src + first, n - first);
}

int ms_shm_xfer(ms_shm *own, ms_shm *out, ms_shm *prev_seg, const void *sp, size_t sn, void *rp,
                size_t rn, const ms_shm_sink *sink, int spin, int64_t deadline,
                ms_shm_alive_fn alive, void *alive_arg, int *which) {
  const char *s = sp;
  if (spin < 0) spin = spin_iters();
  size_t sent = 0, spad = pad8(sn), got = 0, rpad = pad8(rn);
  int dummy;
  if (!which) which = &dummy;
  while (sent < spad || got < rpad) {
    uint32_t bell = atomic_load(&own->h->bell);
    int progress = 0;
    if (sent < spad) {
      uint32_t head = atomic_load_explicit(&out->h->head, memory_order_relaxed);
      uint32_t used = head - atomic_load_explicit(&out->h->tail, memory_order_acquire);
      size_t n = min3(out->cap - used, spad - sent, GRANULE);
      if (n) {
        size_t real = sent < sn ? (n < sn - sent ? n : sn - sent) : 0;
        if (real) fill(out, head, s + sent, real);
        atomic_store_explicit(&out->h->head, head + (uint32_t)n, memory_order_release);
        ring_bell(out);
        sent += n;
        progress = 1;
      }
    }
    if (got < rpad) {
      uint32_t tail = atomic_load_explicit(&own->h->tail, memory_order_relaxed);
      uint32_t avail = atomic_load_explicit(&own->h->head, memory_order_acquire) - tail;
      size_t n = min3(avail, rpad - got, GRANULE);
      if (n) {
        size_t real = got < rn ? (n < rn - got ? n : rn - got) : 0;
        if (real) deliver(own, tail, real, rp, got, sink);
        atomic_store_explicit(&own->h->tail, tail + (uint32_t)n, memory_order_release);
        ring_bell(prev_seg);
        got += n;
        progress = 1;
      }
    }
    if (progress) continue;
    /* nothing to do: spin briefly, then sleep on the doorbell in ticks */
    int rung = 0;
    for (int i = spin; i > 0 && !rung; i--) {
      cpu_relax();
      rung = atomic_load_explicit(&own->h->bell, memory_order_relaxed) != bell;
    }
    /* a yield can last a whole time slice when the core is contended: at most YIELD_MS of it */
    int64_t t_yield = ms_now_ms();
    for (int i = spin ? yield_iters() : 0; i > 0 && !rung; i--) {
      sched_yield();
      rung = atomic_load_explicit(&own->h->bell, memory_order_relaxed) != bell;
      if ((i & 15) == 0 && ms_now_ms() - t_yield >= YIELD_MS) break;
    }
    if (rung) continue;
    int64_t left = deadline - ms_now_ms();
    if (left <= 0) {
      *which = got < rpad ? 1 : 0;
      return -1;
    }
    atomic_store(&own->h->sleeping, 1);
    if (atomic_load(&own->h->bell) == bell)
      futex_wait(&own->h->bell, bell, left < TICK_MS ? left : TICK_MS);
    atomic_store(&own->h->sleeping, 0);
    if (atomic_load(&own->h->bell) == bell && alive) {
      int rc = alive(alive_arg, which);
      if (rc) return rc;
    }
  }
  return 0;
}

#else /* no shared-memory transport: the communicator stays on TCP */

int ms_shm_supported(void) { return 0; }
int ms_shm_create(const char *tag, size_t cap, ms_shm **out, char *name, size_t namecap) {
  (void)tag, (void)cap, (void)name, (void)namecap;
  *out = NULL;
  return ms_fail(MS_ERR_IO, "shared-memory transport: not available on this system");
}
int ms_shm_open(const char *name, ms_shm **out) {
  *out = NULL;
  return ms_fail(MS_ERR_IO, "shared-memory transport: cannot open %s: not available", name);
}
void ms_shm_unlink(ms_shm *s) { (void)s; }
int ms_comm_remove_segments(int pid) {
  (void)pid;
  return 0;
}
void ms_shm_close(ms_shm *s) { (void)s; }
int ms_shm_xfer(ms_shm *own, ms_shm *out, ms_shm *prev_seg, const void *sp, size_t sn, void *rp,
                size_t rn, const ms_shm_sink *sink, int spin, int64_t deadline,
                ms_shm_alive_fn alive, void *alive_arg, int *which) {
  (void)own, (void)out, (void)prev_seg, (void)sp, (void)sn, (void)rp, (void)rn, (void)sink,
      (void)spin;
  (void)deadline, (void)alive, (void)alive_arg;
  *which = 0;
  return -3;
}

#endif

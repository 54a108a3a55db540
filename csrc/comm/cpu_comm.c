/* cpu_comm.c: the CPU communicator: a ring over TCP or, between the ranks of one host, shared
 * memory; collectives with sequence numbers and timeouts; a FIFO communication thread. */
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "comm/comm.h"
#include "comm/comm_backend.h"
#include "comm/shm_ring.h"
#include "core/backend.h"
#include "core/dtype.h"

#define HELLO_MAGIC 0x6d73636fu /* "msco" */
#define HDR_MAGIC 0x6d736864u   /* "mshd" */
#define BCAST_CHUNK ((size_t)4 << 20)
/* all-reduces up to this size exchange whole buffers once instead of reduce-scatter + gather */
#define SMALL_BYTES ((int64_t)64 << 10)
#define SHM_RING_BYTES ((size_t)4 << 20)

enum { K_ALL_REDUCE = 0, K_BROADCAST, K_ALL_GATHER, K_REDUCE_SCATTER, K_BARRIER };
static const char *kind_name[] = {"all_reduce", "broadcast", "all_gather", "reduce_scatter",
                                  "barrier"};

static const ms_comm_backend cpu_ring, cpu_shm;

struct ms_work {
  ms_comm_head table; /* first: the communicator table */
  ms_event event;     /* recorded on the host stream when the collective finished */
  int kind, op, root;
  int64_t seq;
  ms_tensor *t, *x; /* t: in place / output; x: input of gather and scatter */
  int done, status;
  char msg[1024];
  pthread_mutex_t mu;
  pthread_cond_t cv;
  struct ms_work *next;
};

struct ms_comm {
  ms_comm_head table; /* first: the communicator table */
  int rank, world;
  int64_t timeout;
  ms_store *store; /* own connection: arrivals and diagnostics */
  ms_context *ctx;
  char prefix[48];
  int next_fd, prev_fd; /* the ring; with shared memory they carry only liveness (EOF) */
  ms_shm *shm_own, *shm_next, *shm_prev; /* same-host transport, or all NULL (TCP) */
  int64_t seq;                           /* last sequence number handed out (under mu) */
  int broken;
  char broken_msg[1024];
  pthread_t thread;
  int thread_started, stop;
  int busy; /* a collective runs (on the communication thread or inline on a caller's) */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  ms_work *head, *tail;
};

typedef struct hdr {
  uint32_t magic, kind;
  int64_t seq, nbytes;
  int32_t root, dtype;
} hdr;

static int mod(int a, int n) { return ((a % n) + n) % n; }

static int cpu_rank(const ms_comm *c) { return c->rank; }
static int cpu_world_size(const ms_comm *c) { return c->world; }

/* ---- failure reports ---------------------------------------------------------- */

/* Appends the ranks whose last announced sequence number is below seq. */
static void missing_ranks(ms_comm *c, int64_t seq, char *b, size_t cap) {
  size_t n = 0;
  int count = 0;
  b[0] = 0;
  for (int r = 0; r < c->world && n < cap; r++) {
    char key[96];
    snprintf(key, sizeof key, "%sseq/%d", c->prefix, r);
    const char *keys[1] = {key};
    int exist = 0;
    int64_t v = 0;
    const void *val;
    int64_t len;
    if (ms_store_check(c->store, keys, 1, &exist)) {
      snprintf(b, cap, "(could not ask the store)");
      return;
    }
    if (exist && !ms_store_get(c->store, key, 1000, &val, &len)) {
      char tmp[32];
      size_t m = len < 31 ? (size_t)len : 31;
      memcpy(tmp, val, m);
      tmp[m] = 0;
      v = strtoll(tmp, NULL, 10);
    }
    if (v < seq) n += snprintf(b + n, cap - n, "%s%d", count++ ? ", " : "", r);
  }
  if (!count) snprintf(b, cap, "none (every rank reached it; a peer failed inside it)");
}

/* Records the failure of a collective, breaks the ring so the peers fail fast too. */
static int coll_fail(ms_comm *c, ms_work *w, const char *what, int status) {
  char miss[256], dead[128] = "";
  missing_ranks(c, w->seq, miss, sizeof miss);
  int dr[16], nd = 0;
  if (!ms_store_dead_ranks(c->store, c->world, 10000, dr, 16, &nd) && nd > 0) {
    size_t n = snprintf(dead, sizeof dead, "; ranks whose heartbeat stopped:");
    for (int i = 0; i < nd && i < 16 && n < sizeof dead; i++)
      n += snprintf(dead + n, sizeof dead - n, " %d", dr[i]);
  }
  const char *desc = w->t ? ms_desc(w->t) : "";
  ms_fail(status,
          "%s (seq %lld%s%s) on rank %d of %d failed: %s; ranks that have not reached seq "
          "%lld: %s%s",
          kind_name[w->kind], (long long)w->seq, *desc ? ", " : "", desc, c->rank, c->world, what,
          (long long)w->seq, miss, dead);
  c->broken = 1;
  snprintf(c->broken_msg, sizeof c->broken_msg, "%s", ms_last_error());
  if (c->next_fd >= 0) shutdown(c->next_fd, SHUT_RDWR);
  if (c->prev_fd >= 0) shutdown(c->prev_fd, SHUT_RDWR);
  return status;
}

/* Ring step failure: rc from ms_sock_sendrecv, which = 0 send side, 1 receive side. */
static int step_fail(ms_comm *c, ms_work *w, int rc, int which, int64_t start) {
  char what[256];
  int peer = which ? mod(c->rank - 1, c->world) : mod(c->rank + 1, c->world);
  if (rc == -1)
    snprintf(what, sizeof what, "timed out after %lld ms %s rank %d",
             (long long)(ms_now_ms() - start), which ? "waiting for data from" : "sending to",
             peer);
  else
    snprintf(what, sizeof what, "link %s rank %d: %s", which ? "from" : "to", peer,
             ms_sock_errstr(rc));
  return coll_fail(c, w, what, rc == -1 ? MS_ERR_TIMEOUT : MS_ERR_IO);
}

/* ---- ring primitives ------------------------------------------------------------ */

typedef struct run {
  ms_comm *c;
  ms_work *w;
  int64_t start, deadline;
  int spin; /* shared-memory waits: polls before sleeping (-1: the default) */
} run;

/* Shared-memory waits: a neighbour's TCP connection that became readable has closed (nothing
 * else travels on it), so a dead or failed peer still ends the wait within a tick. */
static int ring_alive(void *arg, int *which) {
  ms_comm *c = arg;
  struct pollfd p[2] = {{c->next_fd, POLLIN, 0}, {c->prev_fd, POLLIN, 0}};
  if (poll(p, 2, 0) <= 0) return 0;
  *which = p[0].revents ? 0 : 1;
  return -2;
}

/* One ring step: sn bytes to the next rank, rn bytes from the previous one, into rp or (shared
 * memory only) through sink. */
static int xfer_to(run *R, const void *sp, size_t sn, void *rp, size_t rn,
                   const ms_shm_sink *sink) {
  ms_comm *c = R->c;
  int which = 0, rc;
  if (c->shm_own)
    rc = ms_shm_xfer(c->shm_own, c->shm_next, c->shm_prev, sp, sn, rp, rn, sink, R->spin,
                     R->deadline, ring_alive, c, &which);
  else
    rc = ms_sock_sendrecv(c->next_fd, sp, sn, c->prev_fd, rp, rn, R->deadline, &which);
  return rc ? step_fail(c, R->w, rc, which, R->start) : 0;
}
static int xfer(run *R, const void *sp, size_t sn, void *rp, size_t rn) {
  return xfer_to(R, sp, sn, rp, rn, NULL);
}

/* Announces arrival in the store and checks that the previous rank runs the same call. */
static int coll_begin(run *R, int64_t nbytes, int dtype) {
  ms_comm *c = R->c;
  ms_work *w = R->w;
  R->start = ms_now_ms();
  R->deadline = ms_deadline(c->timeout);
  if (c->broken)
    return ms_fail(MS_ERR_IO,
                   "%s (seq %lld) on rank %d: the communicator is broken by an earlier "
                   "failure: %s",
                   kind_name[w->kind], (long long)w->seq, c->rank, c->broken_msg);
  char key[96], val[32];
  snprintf(key, sizeof key, "%sseq/%d", c->prefix, c->rank);
  int n = snprintf(val, sizeof val, "%lld", (long long)w->seq);
  if (c->world == 1) return 0;
  if (ms_store_set_quiet(c->store, key, val, n)) {
    char what[300];
    snprintf(what, sizeof what, "store unreachable: %s", ms_last_error());
    return coll_fail(c, w, what, MS_ERR_IO);
  }
  hdr mine = {HDR_MAGIC, (uint32_t)w->kind, w->seq, nbytes, w->root, dtype}, theirs;
  int st = xfer(R, &mine, sizeof mine, &theirs, sizeof theirs);
  if (st) return st;
  if (theirs.magic != HDR_MAGIC || theirs.kind != mine.kind || theirs.seq != mine.seq ||
      theirs.nbytes != mine.nbytes || theirs.root != mine.root || theirs.dtype != mine.dtype) {
    char what[300];
    const char *tk = theirs.kind < 5 ? kind_name[theirs.kind] : "?";
    snprintf(what, sizeof what,
             "rank %d called %s (seq %lld, %lld bytes, root %d, dtype %s) instead: the ranks "
             "called collectives in different orders or with different tensors",
             mod(c->rank - 1, c->world), tk, (long long)theirs.seq, (long long)theirs.nbytes,
             theirs.root, ms_dtype_name((ms_dtype)theirs.dtype));
    return coll_fail(c, w, what, MS_ERR_INVALID);
  }
  return 0;
}

/* dst op= src for n elements of a working dtype (f64, f32, i64, i32). */
#define REDUCE_LOOP(T)                                                                             \
  {                                                                                                \
    T *restrict d = dst;                                                                           \
    const T *restrict s = src;                                                                     \
    if (op == MS_COMM_SUM || op == MS_COMM_AVG)                                                    \
      for (int64_t i = 0; i < n; i++)                                                              \
        d[i] = d[i] + s[i];                                                                        \
    else if (op == MS_COMM_MAX)                                                                    \
      for (int64_t i = 0; i < n; i++)                                                              \
        d[i] = (s[i] > d[i] || s[i] != s[i]) ? s[i] : d[i];                                        \
    else                                                                                           \
      for (int64_t i = 0; i < n; i++)                                                              \
        d[i] = (s[i] < d[i] || s[i] != s[i]) ? s[i] : d[i];                                        \
  }
static void reduce_into(void *dst, const void *src, int64_t n, ms_dtype wt, int op) {
  switch (wt) {
  case MS_F64: REDUCE_LOOP(double) break;
  case MS_F32: REDUCE_LOOP(float) break;
  case MS_I64: REDUCE_LOOP(int64_t) break;
  default: REDUCE_LOOP(int32_t) break;
  }
}

static int64_t chunk_off(int64_t n, int w, int c) { return n * c / w; }

/* Reduce-on-receive (shared memory): the received chunk is added straight from the ring. */
typedef struct red_arg {
  char *dst;
  ms_dtype wt;
  int op;
  int64_t es;
} red_arg;
static void red_sink(void *arg, size_t off, const void *p, size_t n) {
  red_arg *a = arg;
  reduce_into(a->dst + off, p, (int64_t)n / a->es, a->wt, a->op);
}

/* Ring reduce-scatter over buf (n elements of wt): afterwards rank r holds the reduced
 * chunk r. Each chunk is summed in one fixed rank order. */
static int ring_reduce_scatter(run *R, char *buf, int64_t n, ms_dtype wt, int op, char *tmp) {
  ms_comm *c = R->c;
  int W = c->world, r = c->rank;
  int64_t es = ms_dtype_size(wt);
  for (int s = 0; s < W - 1; s++) {
    int sc = mod(r - s - 1, W), rc = mod(r - s - 2, W);
    int64_t so = chunk_off(n, W, sc), sl = chunk_off(n, W, sc + 1) - so;
    int64_t ro = chunk_off(n, W, rc), rl = chunk_off(n, W, rc + 1) - ro;
    int st;
    if (c->shm_own) {
      red_arg a = {buf + ro * es, wt, op, es};
      ms_shm_sink sink = {red_sink, &a};
      st = xfer_to(R, buf + so * es, (size_t)(sl * es), NULL, (size_t)(rl * es), &sink);
    } else {
      st = xfer(R, buf + so * es, (size_t)(sl * es), tmp, (size_t)(rl * es));
      if (!st) reduce_into(buf + ro * es, tmp, rl, wt, op);
    }
    if (st) return st;
  }
  return 0;
}

/* Ring all-gather of the chunks: rank r starts owning chunk r (offsets from off(k)). */
static int ring_all_gather(run *R, char *buf, int64_t n, int64_t es, int equal) {
  ms_comm *c = R->c;
  int W = c->world, r = c->rank;
  for (int s = 0; s < W - 1; s++) {
    int sc = mod(r - s, W), rc = mod(r - s - 1, W);
    int64_t so = equal ? n * sc : chunk_off(n, W, sc);
    int64_t sl = equal ? n : chunk_off(n, W, sc + 1) - so;
    int64_t ro = equal ? n * rc : chunk_off(n, W, rc);
    int64_t rl = equal ? n : chunk_off(n, W, rc + 1) - ro;
    int st = xfer(R, buf + so * es, (size_t)(sl * es), buf + ro * es, (size_t)(rl * es));
    if (st) return st;
  }
  return 0;
}

/* ---- working buffers --------------------------------------------------------------- */

static ms_dtype work_dtype(ms_dtype d) { return ms_is_half(d) ? MS_F32 : d; }

static void halves_to_f32(float *dst, const uint16_t *src, int64_t n, ms_dtype d) {
  for (int64_t i = 0; i < n; i++)
    dst[i] = d == MS_F16 ? ms_f16_to_f32(src[i]) : ms_bf16_to_f32(src[i]);
}
static void f32_to_halves(uint16_t *dst, const float *src, int64_t n, ms_dtype d) {
  for (int64_t i = 0; i < n; i++)
    dst[i] = d == MS_F16 ? ms_f32_to_f16(src[i]) : ms_f32_to_bf16(src[i]);
}
static void divide(char *buf, int64_t n, ms_dtype wt, int world) {
  if (wt == MS_F64)
    for (int64_t i = 0; i < n; i++)
      ((double *)buf)[i] /= world;
  else
    for (int64_t i = 0; i < n; i++)
      ((float *)buf)[i] /= (float)world;
}

/* ---- the collectives (run on the communication thread) ------------------------------ */

static int do_all_reduce(run *R, ms_tensor *t, int op, const char *name) {
  ms_comm *c = R->c;
  ms_tensor *ct = NULL;
  char *tmp = NULL, *conv = NULL;
  int64_t n = ms_numel(t);
  int st = coll_begin(R, n * ms_dtype_size(t->dtype), t->dtype);
  if (st || c->world == 1) return st; /* one rank: sum, avg, max and min are the identity */
  if ((st = ms_contiguous(c->ctx, t, &ct))) goto done;
  ms_dtype wt = work_dtype(t->dtype);
  int64_t es = ms_dtype_size(wt);
  char *buf = ms_data(ct);
  if (ms_is_half(t->dtype)) {
    conv = malloc((size_t)(n ? n : 1) * 4);
    if (!conv) {
      st = ms_fail(MS_ERR_OOM, "%s: out of memory for %lld floats", name, (long long)n);
      goto done;
    }
    halves_to_f32((float *)conv, (const uint16_t *)buf, n, t->dtype);
    buf = conv;
  }
  if (n * es <= SMALL_BYTES) {
    /* one exchange: gather every rank's buffer, then each rank reduces in rank order */
    tmp = malloc((size_t)((n ? n : 1) * es * c->world));
    if (!tmp) {
      st = ms_fail(MS_ERR_OOM, "%s: out of memory for %lld elements", name, (long long)n);
      goto done;
    }
    memcpy(tmp + n * es * c->rank, buf, (size_t)(n * es));
    if ((st = ring_all_gather(R, tmp, n, es, 1))) goto done;
    memcpy(buf, tmp, (size_t)(n * es));
    for (int k = 1; k < c->world; k++)
      reduce_into(buf, tmp + n * es * k, n, wt, op);
    if (op == MS_COMM_AVG) divide(buf, n, wt, c->world);
  } else {
    tmp = c->shm_own ? NULL : malloc((size_t)((n / c->world + 1) * es)); /* shm reduces in place */
    if (!c->shm_own && !tmp) {
      st = ms_fail(MS_ERR_OOM, "%s: out of memory for a %lld-element buffer", name,
                   (long long)(n / c->world + 1));
      goto done;
    }
    if ((st = ring_reduce_scatter(R, buf, n, wt, op, tmp))) goto done;
    /* avg: each rank divides the chunk it owns, so every rank gets the same bits */
    int64_t mo = chunk_off(n, c->world, c->rank), ml = chunk_off(n, c->world, c->rank + 1) - mo;
    if (op == MS_COMM_AVG) divide(buf + mo * es, ml, wt, c->world);
    if ((st = ring_all_gather(R, buf, n, es, 0))) goto done;
  }
  if (conv) f32_to_halves((uint16_t *)ms_data(ct), (const float *)conv, n, t->dtype);
  if (ct->storage != t->storage) st = ms_copy_(c->ctx, t, ct);
done:
  free(tmp);
  free(conv);
  ms_tensor_free(ct);
  return st;
}

static int do_broadcast(run *R, ms_tensor *t, int root) {
  ms_comm *c = R->c;
  int64_t nb = ms_numel(t) * ms_dtype_size(t->dtype);
  int st = coll_begin(R, nb, t->dtype);
  if (st || c->world == 1) return st;
  ms_tensor *ct = NULL;
  if ((st = ms_contiguous(c->ctx, t, &ct))) return st;
  char *buf = ms_data(ct);
  int forward = mod(c->rank + 1, c->world) != root;
  for (int64_t off = 0; off < nb && !st; off += (int64_t)BCAST_CHUNK) {
    size_t len = (size_t)(nb - off) < BCAST_CHUNK ? (size_t)(nb - off) : BCAST_CHUNK;
    if (c->rank != root) st = xfer(R, NULL, 0, buf + off, len);
    if (!st && (c->rank == root || forward)) st = xfer(R, buf + off, len, NULL, 0);
  }
  if (!st && c->rank != root && ct->storage != t->storage) st = ms_copy_(c->ctx, t, ct);
  ms_tensor_free(ct);
  return st;
}

static int do_all_gather(run *R, const ms_tensor *x, ms_tensor *out) {
  ms_comm *c = R->c;
  int64_t n = ms_numel(x), es = ms_dtype_size(x->dtype);
  int st = coll_begin(R, n * es, x->dtype);
  if (st) return st;
  ms_tensor *co = NULL, *cx = NULL;
  if ((st = ms_contiguous(c->ctx, out, &co)) || (st = ms_contiguous(c->ctx, x, &cx))) goto done;
  char *buf = ms_data(co);
  memmove(buf + n * es * c->rank, ms_data(cx), (size_t)(n * es));
  if ((st = ring_all_gather(R, buf, n, es, 1))) goto done;
  if (co->storage != out->storage) st = ms_copy_(c->ctx, out, co);
done:
  ms_tensor_free(co);
  ms_tensor_free(cx);
  return st;
}

static int do_reduce_scatter(run *R, const ms_tensor *x, ms_tensor *out, int op) {
  ms_comm *c = R->c;
  int64_t N = ms_numel(x);
  int st = coll_begin(R, N * ms_dtype_size(x->dtype), x->dtype);
  if (st) return st;
  ms_dtype wt = work_dtype(x->dtype);
  int64_t es = ms_dtype_size(wt), m = N / c->world;
  ms_tensor *w = NULL, *ow = NULL;
  char *tmp = NULL;
  /* a private working copy in the working dtype */
  if ((st = ms_cast(c->ctx, x, wt, &w))) goto done;
  tmp = malloc((size_t)((m ? m : 1) * es));
  if (!tmp) {
    st = ms_fail(MS_ERR_OOM, "reduce_scatter: out of memory");
    goto done;
  }
  char *buf = ms_data(w);
  if (c->world > 1 && (st = ring_reduce_scatter(R, buf, N, wt, op, tmp))) goto done;
  if (op == MS_COMM_AVG) divide(buf + m * c->rank * es, m, wt, c->world);
  if ((st = ms_slice(w, 0, x->shape[0] / c->world * c->rank, x->shape[0] / c->world * (c->rank + 1),
                     1, &ow)))
    goto done;
  st = ms_copy_(c->ctx, out, ow);
done:
  free(tmp);
  ms_tensor_free(w);
  ms_tensor_free(ow);
  return st;
}

/* inline: on the caller's thread, which would only sleep while it waits (so it may poll first);
 * the communication thread sleeps at once, leaving the cores to the computation beside it. */
static int run_work(ms_comm *c, ms_work *w, int inline_call) {
  run R = {c, w, ms_now_ms(), 0, inline_call ? -1 : 0};
  switch (w->kind) {
  case K_ALL_REDUCE: return do_all_reduce(&R, w->t, w->op, "all_reduce");
  case K_BROADCAST: return do_broadcast(&R, w->t, w->root);
  case K_ALL_GATHER: return do_all_gather(&R, w->x, w->t);
  case K_REDUCE_SCATTER: return do_reduce_scatter(&R, w->x, w->t, w->op);
  default: return do_all_reduce(&R, w->t, MS_COMM_SUM, "barrier");
  }
}

/* ---- the communication thread and work handles -------------------------------------- */

static void *comm_main(void *arg) {
  ms_comm *c = arg;
  const char *nice_env = getenv("MS_COMM_NICE");
  if (nice_env && *nice_env) setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), atoi(nice_env));
  pthread_mutex_lock(&c->mu);
  for (;;) {
    while (!c->head && !c->stop)
      pthread_cond_wait(&c->cv, &c->mu);
    if (!c->head) break;
    if (c->busy) { /* a blocking call runs inline on its caller's thread: wait for it */
      pthread_cond_wait(&c->cv, &c->mu);
      continue;
    }
    ms_work *w = c->head;
    c->head = w->next;
    if (!c->head) c->tail = NULL;
    c->busy = 1;
    pthread_mutex_unlock(&c->mu);
    ms_clear_error();
    int st = run_work(c, w, 0);
    pthread_mutex_lock(&w->mu);
    w->status = st;
    if (st) snprintf(w->msg, sizeof w->msg, "%s", ms_last_error());
    /* the tensors are released as soon as the work is done */
    ms_tensor_free(w->t);
    ms_tensor_free(w->x);
    w->t = w->x = NULL;
    ms_event_record(c->ctx, &w->event, ms_context_stream(c->ctx, MS_CPU, 0));
    w->done = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_mutex_lock(&c->mu);
    c->busy = 0;
    pthread_cond_broadcast(&c->cv); /* a blocking call may wait for the queue to drain */
  }
  pthread_mutex_unlock(&c->mu);
  return NULL;
}

static int enqueue(ms_comm *c, int kind, ms_tensor *t, const ms_tensor *x, int op, int root,
                   ms_work **out) {
  ms_work *w = calloc(1, sizeof *w);
  if (!w) return ms_fail(MS_ERR_OOM, "%s: out of memory", kind_name[kind]);
  w->table.be = c->table.be;
  w->kind = kind;
  w->op = op;
  w->root = root;
  int st = t ? ms_tensor_alias(t, &w->t) : 0;
  if (!st && x) st = ms_tensor_alias(x, &w->x);
  if (st) {
    ms_tensor_free(w->t);
    free(w);
    return st;
  }
  pthread_mutex_init(&w->mu, NULL);
  pthread_cond_init(&w->cv, NULL);
  pthread_mutex_lock(&c->mu);
  w->seq = ++c->seq;
  if (c->tail)
    c->tail->next = w;
  else
    c->head = w;
  c->tail = w;
  pthread_cond_signal(&c->cv);
  pthread_mutex_unlock(&c->mu);
  *out = w;
  return 0;
}

/* Waits until the communication thread finished w (the event is recorded), then for the event. */
static int cpu_work_wait(ms_work *w, int64_t timeout_ms) {
  int64_t deadline = ms_deadline(timeout_ms), start = ms_now_ms();
  pthread_mutex_lock(&w->mu);
  while (!w->done) {
    if (deadline == INT64_MAX) {
      pthread_cond_wait(&w->cv, &w->mu);
      continue;
    }
    int64_t left = deadline - ms_now_ms();
    if (left <= 0) break;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t ns = ts.tv_nsec + (left % 1000) * 1000000;
    ts.tv_sec += left / 1000 + ns / 1000000000;
    ts.tv_nsec = ns % 1000000000;
    pthread_cond_timedwait(&w->cv, &w->mu, &ts);
  }
  int done = w->done, st = w->status;
  pthread_mutex_unlock(&w->mu);
  if (!done)
    return ms_fail(MS_ERR_TIMEOUT, "work wait: %s (seq %lld) still running after %lld ms",
                   kind_name[w->kind], (long long)w->seq, (long long)(ms_now_ms() - start));
  if (st) return ms_fail(st, "%s", w->msg);
  return ms_event_synchronize(NULL, &w->event);
}

static int cpu_work_is_completed(ms_work *w) {
  pthread_mutex_lock(&w->mu);
  int d = w->done && ms_event_query(&w->event);
  pthread_mutex_unlock(&w->mu);
  return d;
}

static void cpu_work_free(ms_work *w) {
  pthread_mutex_lock(&w->mu);
  while (!w->done)
    pthread_cond_wait(&w->cv, &w->mu);
  pthread_mutex_unlock(&w->mu);
  pthread_mutex_destroy(&w->mu);
  pthread_cond_destroy(&w->cv);
  ms_event_release(&w->event);
  free(w);
}

/* A blocking collective. When nothing is queued or running it runs inline on the caller's
 * thread (same sequence numbers, same ring): SyncBatchNorm's small all-reduces then cost no
 * hand-over to the communication thread and back (two wake-ups each on a loaded machine). */
static int sync_call(ms_comm *c, int kind, ms_tensor *t, const ms_tensor *x, int op, int root) {
  pthread_mutex_lock(&c->mu);
  if (!c->head && !c->busy) {
    c->busy = 1;
    ms_work w = {.table = {c->table.be},
                 .kind = kind,
                 .op = op,
                 .root = root,
                 .seq = ++c->seq,
                 .t = t,
                 .x = (ms_tensor *)x};
    pthread_mutex_unlock(&c->mu);
    int st = run_work(c, &w, 1);
    pthread_mutex_lock(&c->mu);
    c->busy = 0;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    return st;
  }
  pthread_mutex_unlock(&c->mu);
  ms_work *w;
  int st = enqueue(c, kind, t, x, op, root, &w);
  if (st) return st;
  st = cpu_work_wait(w, -1);
  cpu_work_free(w);
  return st;
}

/* ---- validation (caller's thread) ------------------------------------------------------ */

static int check_tensor(ms_comm *c, const char *op, const char *name, const ms_tensor *t) {
  if (!c) return ms_fail(MS_ERR_INVALID, "%s: communicator is NULL", op);
  if (ms_check_tensor(op, name, t)) return MS_ERR_INVALID;
  if (t->storage->device != MS_CPU)
    return ms_fail(MS_ERR_DEVICE, "%s: the CPU communicator needs CPU tensors, %s is %s", op, name,
                   ms_desc(t));
  return 0;
}
static int check_reduce(ms_comm *c, const char *op, const ms_tensor *t, int rop) {
  int st = check_tensor(c, op, "tensor", t);
  if (st) return st;
  ms_dtype d = t->dtype;
  if (d == MS_U8 || d == MS_BOOL)
    return ms_fail(MS_ERR_DTYPE, "%s: dtype of %s not supported (f64 f32 f16 bf16 i64 i32)", op,
                   ms_desc(t));
  if (rop < MS_COMM_SUM || rop > MS_COMM_MIN)
    return ms_fail(MS_ERR_INVALID, "%s: unknown reduce op %d (sum 0, avg 1, max 2, min 3)", op,
                   rop);
  if (rop == MS_COMM_AVG && !ms_dtype_is_float(d))
    return ms_fail(MS_ERR_DTYPE, "%s: avg needs a floating tensor, got %s", op, ms_desc(t));
  return 0;
}

static int cpu_all_reduce(ms_comm *c, ms_tensor *t, ms_comm_op op, ms_work **out) {
  int st = check_reduce(c, "all_reduce", t, op);
  if (st) return st;
  return out ? enqueue(c, K_ALL_REDUCE, t, NULL, op, 0, out)
             : sync_call(c, K_ALL_REDUCE, t, NULL, op, 0);
}

static int check_bcast(ms_comm *c, ms_tensor *t, int root) {
  int st = check_tensor(c, "broadcast", "tensor", t);
  if (st) return st;
  if (root < 0 || root >= c->world)
    return ms_fail(MS_ERR_INVALID, "broadcast: root %d out of range for %d ranks (0-based)", root,
                   c->world);
  return 0;
}
static int cpu_broadcast(ms_comm *c, ms_tensor *t, int root, ms_work **out) {
  int st = check_bcast(c, t, root);
  if (st) return st;
  return out ? enqueue(c, K_BROADCAST, t, NULL, 0, root, out)
             : sync_call(c, K_BROADCAST, t, NULL, 0, root);
}

static int cpu_all_gather(ms_comm *c, const ms_tensor *x, ms_tensor *out) {
  int st = check_tensor(c, "all_gather", "input", x);
  if (!st) st = check_tensor(c, "all_gather", "output", out);
  if (st) return st;
  int ok = out->dtype == x->dtype && out->ndim == x->ndim + 1 && out->shape[0] == c->world;
  for (int i = 0; ok && i < x->ndim; i++)
    ok = out->shape[i + 1] == x->shape[i];
  if (!ok)
    return ms_fail(MS_ERR_INVALID,
                   "all_gather: output %s must be [%d, *input.shape] of input "
                   "%s's dtype",
                   ms_desc(out), c->world, ms_desc(x));
  return sync_call(c, K_ALL_GATHER, out, x, 0, 0);
}

static int cpu_reduce_scatter(ms_comm *c, const ms_tensor *x, ms_tensor *out, ms_comm_op op) {
  int st = check_reduce(c, "reduce_scatter", x, op);
  if (!st) st = check_tensor(c, "reduce_scatter", "output", out);
  if (st) return st;
  int ok = x->ndim >= 1 && out->dtype == x->dtype && out->ndim == x->ndim &&
           x->shape[0] == out->shape[0] * c->world;
  for (int i = 1; ok && i < x->ndim; i++)
    ok = out->shape[i] == x->shape[i];
  if (!ok)
    return ms_fail(MS_ERR_INVALID,
                   "reduce_scatter: input %s must be [%d * n, ...] and output %s "
                   "[n, ...] of the same dtype",
                   ms_desc(x), c->world, ms_desc(out));
  return sync_call(c, K_REDUCE_SCATTER, out, x, op, 0);
}

static int cpu_barrier(ms_comm *c) {
  ms_tensor *t;
  int64_t one = 1;
  int st = ms_tensor_new(&one, 1, MS_I32, MS_CPU, 0, &t);
  if (st) return st;
  memset(ms_data(t), 0, 4);
  st = sync_call(c, K_BARRIER, t, NULL, MS_COMM_SUM, 0);
  ms_tensor_free(t);
  return st;
}

/* ---- setup -------------------------------------------------------------------------- */

static void cpu_destroy(ms_comm *c) {
  if (c->thread_started) {
    pthread_mutex_lock(&c->mu);
    c->stop = 1;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL);
  }
  pthread_mutex_destroy(&c->mu);
  pthread_cond_destroy(&c->cv);
  ms_shm_close(c->shm_own);
  ms_shm_close(c->shm_next);
  ms_shm_close(c->shm_prev);
  ms_sock_close(c->next_fd);
  ms_sock_close(c->prev_fd);
  ms_store_close(c->store);
  ms_context_free(c->ctx);
  free(c);
}

static int connect_ring(ms_comm *c, ms_store *user_store, int64_t deadline) {
  char host[128], key[96], val[192];
  int lfd = -1, port = 0, st;
  if (ms_sock_local_host(ms_store_fd(user_store), host, sizeof host))
    return ms_fail(MS_ERR_IO, "comm init: cannot tell this host's address");
  if ((st = ms_sock_listen("comm init", host, &lfd, &port))) return st;
  snprintf(key, sizeof key, "%saddr/%d", c->prefix, c->rank);
  int n = snprintf(val, sizeof val, "%s %d", host, port);
  if ((st = ms_store_set(c->store, key, val, n))) goto out;
  int next = mod(c->rank + 1, c->world), prev = mod(c->rank - 1, c->world);
  snprintf(key, sizeof key, "%saddr/%d", c->prefix, next);
  const void *v;
  int64_t vn, left = deadline - ms_now_ms();
  if ((st = ms_store_get(c->store, key, left > 0 ? left : 0, &v, &vn))) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", ms_last_error());
    st = ms_fail(st, "comm init on rank %d of %d: rank %d never published its address: %s", c->rank,
                 c->world, next, msg);
    goto out;
  }
  char nhost[128];
  int nport = 0;
  snprintf(val, sizeof val, "%.*s", (int)(vn < 190 ? vn : 190), (const char *)v);
  if (sscanf(val, "%127s %d", nhost, &nport) != 2) {
    st = ms_fail(MS_ERR_IO, "comm init: bad address '%s' published by rank %d", val, next);
    goto out;
  }
  if ((st = ms_sock_connect("comm init", nhost, nport, deadline, &c->next_fd))) goto out;
  uint32_t hello[3] = {HELLO_MAGIC, (uint32_t)c->rank, (uint32_t)c->world};
  if (ms_sock_send(c->next_fd, hello, sizeof hello, deadline)) {
    st = ms_fail(MS_ERR_IO, "comm init on rank %d: cannot greet rank %d at %s:%d", c->rank, next,
                 nhost, nport);
    goto out;
  }
  st = ms_sock_accept("comm init", lfd, deadline, &c->prev_fd);
  if (st == MS_ERR_TIMEOUT)
    st = ms_fail(st, "comm init on rank %d of %d: rank %d did not connect within the timeout",
                 c->rank, c->world, prev);
  if (st) goto out;
  uint32_t got[3];
  int rc = ms_sock_recv(c->prev_fd, got, sizeof got, deadline);
  if (rc || got[0] != HELLO_MAGIC || got[1] != (uint32_t)prev || got[2] != (uint32_t)c->world) {
    st = ms_fail(MS_ERR_IO,
                 "comm init on rank %d of %d: bad greeting from the previous rank %d "
                 "(%s)",
                 c->rank, c->world, prev, rc ? ms_sock_errstr(rc) : "wrong rank or world size");
  }
out:
  ms_sock_close(lfd);
  return st;
}

/* This host's identity: boot id, host name and the address it reaches the store from (network
 * namespaces joined by a link count as different hosts, so cutting the link still cuts them). */
static void host_id(ms_store *store, char *b, size_t cap) {
  char boot[64] = "?", name[128] = "?", addr[128] = "?";
  const char *force = getenv("MS_COMM_HOST_ID"); /* tests: pretend to be another host */
  FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
  if (f) {
    if (!fgets(boot, sizeof boot, f)) snprintf(boot, sizeof boot, "?");
    fclose(f);
    boot[strcspn(boot, "\n")] = 0;
  }
  gethostname(name, sizeof name - 1);
  ms_sock_local_host(ms_store_fd(store), addr, sizeof addr);
  if (force && *force)
    snprintf(b, cap, "%s", force);
  else
    snprintf(b, cap, "%s/%s/%s", boot, name, addr);
  for (char *p = b; *p; p++)
    if (*p == ' ') *p = '_';
}

/* Chooses the transport: shared memory when every rank runs on this host and could create its
 * segment (MS_COMM_TRANSPORT=auto, the default), unless MS_COMM_TRANSPORT=tcp; =shm insists.
 * Each rank maps its own segment and its neighbours'; once both neighbours confirmed (one byte
 * on each TCP link) the names are removed, so nothing is left behind in /dev/shm. */
static int setup_shm(ms_comm *c, ms_store *user_store, int64_t deadline) {
  const char *mode = getenv("MS_COMM_TRANSPORT");
  if (!mode || !*mode) mode = "auto";
  int force = !strcmp(mode, "shm");
  if (strcmp(mode, "auto") && strcmp(mode, "tcp") && !force)
    return ms_fail(MS_ERR_INVALID,
                   "comm init: MS_COMM_TRANSPORT must be auto, tcp or shm, got '%s'", mode);
  char id[320], name[96] = "-", key[96], val[512], why[1200] = "";
  host_id(user_store, id, sizeof id);
  int st = 0;
  if (strcmp(mode, "tcp")) {
    char tag[32];
    snprintf(tag, sizeof tag, "c%dr%d", ms_store_next_comm_id(user_store), c->rank);
    if (ms_shm_create(tag, SHM_RING_BYTES, &c->shm_own, name, sizeof name)) {
      snprintf(why, sizeof why, "rank %d: %s", c->rank, ms_last_error());
      snprintf(name, sizeof name, "-");
    }
  }
  snprintf(key, sizeof key, "%sshm/%d", c->prefix, c->rank);
  int n = snprintf(val, sizeof val, "%s %s", name, id);
  if ((st = ms_store_set(c->store, key, val, n))) return st;
  char next_name[96] = "", prev_name[96] = "";
  int use = 1;
  for (int r = 0; r < c->world; r++) {
    const void *v;
    int64_t vn, left = deadline - ms_now_ms();
    snprintf(key, sizeof key, "%sshm/%d", c->prefix, r);
    if ((st = ms_store_get(c->store, key, left > 0 ? left : 0, &v, &vn))) return st;
    char rv[512], rname[96], rid[400];
    snprintf(rv, sizeof rv, "%.*s", (int)(vn < 510 ? vn : 510), (const char *)v);
    if (sscanf(rv, "%95s %399s", rname, rid) != 2)
      return ms_fail(MS_ERR_IO, "comm init: bad transport entry '%s' from rank %d", rv, r);
    if (!strcmp(rname, "-")) {
      if (use && !*why) snprintf(why, sizeof why, "rank %d has no shared-memory segment", r);
      use = 0;
    } else if (strcmp(rid, id)) {
      if (use)
        snprintf(why, sizeof why, "rank %d runs on another host (%s, this one %s)", r, rid, id);
      use = 0;
    }
    if (r == mod(c->rank + 1, c->world)) snprintf(next_name, sizeof next_name, "%s", rname);
    if (r == mod(c->rank - 1, c->world)) snprintf(prev_name, sizeof prev_name, "%s", rname);
  }
  if (!use) {
    ms_shm_close(c->shm_own);
    c->shm_own = NULL;
    if (force)
      return ms_fail(MS_ERR_INVALID, "comm init on rank %d: MS_COMM_TRANSPORT=shm but %s", c->rank,
                     why);
    return 0;
  }
  char ok = 1, got[2] = {0, 0};
  char err[300] = "";
  if (ms_shm_open(next_name, &c->shm_next) || ms_shm_open(prev_name, &c->shm_prev)) {
    snprintf(err, sizeof err, "%s", ms_last_error());
    ok = 0;
  }
  /* tell both neighbours whether this rank mapped their segments; hear the same from them */
  int rc = ms_sock_send(c->next_fd, &ok, 1, deadline);
  if (!rc) rc = ms_sock_send(c->prev_fd, &ok, 1, deadline);
  if (!rc) rc = ms_sock_recv(c->prev_fd, &got[0], 1, deadline);
  if (!rc) rc = ms_sock_recv(c->next_fd, &got[1], 1, deadline);
  if (!ok)
    return ms_fail(MS_ERR_IO,
                   "comm init on rank %d: shared-memory transport: %s "
                   "(MS_COMM_TRANSPORT=tcp avoids it)",
                   c->rank, err);
  if (rc)
    return ms_fail(MS_ERR_IO,
                   "comm init on rank %d: shared-memory handshake with its neighbours "
                   "failed: %s",
                   c->rank, ms_sock_errstr(rc));
  if (!got[0] || !got[1])
    return ms_fail(MS_ERR_IO,
                   "comm init on rank %d: rank %d could not map the shared-memory "
                   "transport (MS_COMM_TRANSPORT=tcp avoids it)",
                   c->rank, !got[0] ? mod(c->rank - 1, c->world) : mod(c->rank + 1, c->world));
  ms_shm_unlink(c->shm_own);
  c->table.be = &cpu_shm;
  return 0;
}

int ms_comm_init_cpu(ms_store *store, int rank, int world_size, int64_t timeout_ms, ms_comm **out) {
  if (!out) return ms_fail(MS_ERR_INVALID, "comm init: out is NULL");
  *out = NULL;
  if (!store) return ms_fail(MS_ERR_INVALID, "comm init: store is NULL");
  if (world_size < 1 || rank < 0 || rank >= world_size)
    return ms_fail(MS_ERR_INVALID,
                   "comm init: rank %d out of range for world size %d (ranks "
                   "are 0-based)",
                   rank, world_size);
  ms_comm *c = calloc(1, sizeof *c);
  if (!c) return ms_fail(MS_ERR_OOM, "comm init: out of memory");
  c->table.be = &cpu_ring;
  c->rank = rank;
  c->world = world_size;
  c->timeout = timeout_ms;
  c->next_fd = c->prev_fd = -1;
  pthread_mutex_init(&c->mu, NULL);
  pthread_cond_init(&c->cv, NULL);
  snprintf(c->prefix, sizeof c->prefix, "ms_comm/%d/", ms_store_next_comm_id(store));
  int st = ms_context_new(&c->ctx);
  if (!st) st = ms_context_set_num_threads(c->ctx, 1);
  if (!st) st = ms_store_reconnect(store, &c->store);
  const char *tr = getenv("MS_COMM_TRANSPORT");
  if (!st && tr && *tr && strcmp(tr, "auto") && strcmp(tr, "tcp") && strcmp(tr, "shm"))
    st = ms_fail(MS_ERR_INVALID, "comm init: MS_COMM_TRANSPORT must be auto, tcp or shm, got '%s'",
                 tr);
  int64_t deadline = ms_deadline(timeout_ms);
  if (!st && world_size > 1) st = connect_ring(c, store, deadline);
  if (!st && world_size > 1) st = setup_shm(c, store, deadline);
  if (!st) {
    if (pthread_create(&c->thread, NULL, comm_main, c) != 0)
      st = ms_fail(MS_ERR_INTERNAL, "comm init: cannot start the communication thread");
    else
      c->thread_started = 1;
  }
  if (st) {
    cpu_destroy(c);
    return st;
  }
  *out = c;
  return 0;
}

/* ---- the table ---------------------------------------------------------------------- */

#define CPU_TABLE(nm)                                                                              \
  {                                                                                                \
    .name = nm, .rank = cpu_rank, .world_size = cpu_world_size, .all_reduce = cpu_all_reduce,      \
    .broadcast = cpu_broadcast, .all_gather = cpu_all_gather,                                      \
    .reduce_scatter = cpu_reduce_scatter, .barrier = cpu_barrier, .destroy = cpu_destroy,          \
    .work_wait = cpu_work_wait, .work_is_completed = cpu_work_is_completed,                        \
    .work_free = cpu_work_free,                                                                    \
  }
/* one table per transport: the collectives are the same, the name says which carries them */
static const ms_comm_backend cpu_ring = CPU_TABLE("cpu ring (tcp)");
static const ms_comm_backend cpu_shm = CPU_TABLE("cpu ring (shared memory)");

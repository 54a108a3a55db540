/* store.c: the rendezvous store client: blocking requests with deadlines, heartbeats. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "comm/comm.h"

struct ms_store {
  int fd;
  char host[256];
  int port;
  char addr[300];
  int64_t timeout;
  int broken;
  int comm_count;
  ms_cbuf out, in;
  pthread_mutex_t mu;
  /* heartbeat thread */
  int hb_started, hb_stop, hb_fd, hb_rank;
  int64_t hb_interval;
  pthread_t hb_thread;
  pthread_mutex_t hb_mu;
  pthread_cond_t hb_cv;
};

const char *ms_store_addr(const ms_store *s) { return s->addr; }
int64_t ms_store_default_timeout(const ms_store *s) { return s->timeout; }
int ms_store_fd(const ms_store *s) { return s->fd; }
int ms_store_next_comm_id(ms_store *s) {
  pthread_mutex_lock(&s->mu);
  int id = s->comm_count++;
  pthread_mutex_unlock(&s->mu);
  return id;
}

int ms_store_connect(const char *host, int port, int64_t timeout_ms, ms_store **out) {
  if (!out) return ms_fail(MS_ERR_INVALID, "store connect: out is NULL");
  *out = NULL;
  if (!host || !*host) return ms_fail(MS_ERR_INVALID, "store connect: host is empty");
  if (port <= 0 || port > 65535)
    return ms_fail(MS_ERR_INVALID, "store connect: port %d out of range [1, 65535]", port);
  if (strlen(host) >= 256) return ms_fail(MS_ERR_INVALID, "store connect: host name too long");
  ms_store *s = calloc(1, sizeof *s);
  if (!s) return ms_fail(MS_ERR_OOM, "store connect: out of memory");
  snprintf(s->host, sizeof s->host, "%s", host);
  s->port = port;
  snprintf(s->addr, sizeof s->addr, "%s:%d", host, port);
  s->timeout = timeout_ms;
  s->hb_fd = -1;
  int st = ms_sock_connect("store connect", host, port, ms_deadline(timeout_ms), &s->fd);
  if (st) {
    free(s);
    return st;
  }
  pthread_mutex_init(&s->mu, NULL);
  pthread_mutex_init(&s->hb_mu, NULL);
  pthread_cond_init(&s->hb_cv, NULL);
  *out = s;
  return 0;
}

static void heartbeat_stop(ms_store *s);

int ms_store_reconnect(const ms_store *s, ms_store **out) {
  return ms_store_connect(s->host, s->port, s->timeout, out);
}

void ms_store_close(ms_store *s) {
  if (!s) return;
  heartbeat_stop(s);
  ms_sock_close(s->fd);
  ms_cbuf_free(&s->out);
  ms_cbuf_free(&s->in);
  pthread_mutex_destroy(&s->mu);
  pthread_mutex_destroy(&s->hb_mu);
  pthread_cond_destroy(&s->hb_cv);
  free(s);
}

/* ---- one request / reply (caller holds s->mu and has filled s->out after 4 bytes) ---- */
static void begin(ms_store *s, uint8_t code) {
  s->out.len = 0;
  uint32_t zero = 0;
  ms_cbuf_put(&s->out, &zero, 4);
  ms_cbuf_put(&s->out, &code, 1);
}

/* Sends s->out and reads the reply into s->in; *code gets the reply code. wait_ms is how
 * long the server may legitimately take (a wait's timeout). */
static int roundtrip(ms_store *s, const char *op, const char *key, int64_t wait_ms, uint8_t *code,
                     ms_reader *r) {
  if (s->broken)
    return ms_fail(MS_ERR_IO, "store %s '%s' on %s: the connection broke in an earlier call", op,
                   key, s->addr);
  if (!s->out.data) return ms_fail(MS_ERR_OOM, "store %s '%s': out of memory", op, key);
  uint32_t n = (uint32_t)(s->out.len - 4);
  memcpy(s->out.data, &n, 4);
  int64_t start = ms_now_ms();
  int64_t budget = wait_ms < 0 || s->timeout < 0 ? -1 : wait_ms + s->timeout;
  int64_t deadline = ms_deadline(budget);
  int rc = ms_sock_send(s->fd, s->out.data, s->out.len, deadline);
  uint32_t len = 0;
  if (!rc) rc = ms_sock_recv(s->fd, &len, 4, deadline);
  if (!rc && len > MS_STORE_MAX_FRAME) rc = -3;
  if (!rc && ms_cbuf_reserve(&s->in, len)) rc = -3;
  if (!rc) rc = ms_sock_recv(s->fd, s->in.data, len, deadline);
  if (rc) {
    s->broken = 1;
    return ms_fail(rc == -1 ? MS_ERR_TIMEOUT : MS_ERR_IO,
                   "store %s '%s' on %s: no reply after %lld ms (%s)", op, key, s->addr,
                   (long long)(ms_now_ms() - start), ms_sock_errstr(rc));
  }
  s->in.len = len;
  r->p = s->in.data;
  r->left = len;
  if (ms_rd_u8(r, code) || *code == MS_REPLY_ERROR)
    return ms_fail(MS_ERR_IO, "store %s '%s' on %s: the server refused the request", op, key,
                   s->addr);
  return 0;
}

static int bad_reply(ms_store *s, const char *op, const char *key) {
  s->broken = 1;
  return ms_fail(MS_ERR_IO, "store %s '%s' on %s: malformed reply", op, key, s->addr);
}

#define CHECK_STORE(op)                                                                            \
  if (!s) return ms_fail(MS_ERR_INVALID, "store %s: store is NULL", op);                           \
  if (!key) return ms_fail(MS_ERR_INVALID, "store %s: key is NULL", op)

int ms_store_set(ms_store *s, const char *key, const void *value, int64_t nbytes) {
  CHECK_STORE("set");
  if (nbytes < 0 || nbytes > (int64_t)MS_STORE_MAX_FRAME / 2 || (!value && nbytes))
    return ms_fail(MS_ERR_INVALID, "store set '%s': bad value (%lld bytes)", key,
                   (long long)nbytes);
  pthread_mutex_lock(&s->mu);
  begin(s, MS_STORE_SET);
  ms_cbuf_put_str(&s->out, key, strlen(key));
  ms_cbuf_put_str(&s->out, value, (size_t)nbytes);
  uint8_t code;
  ms_reader r;
  int st = roundtrip(s, "set", key, 0, &code, &r);
  pthread_mutex_unlock(&s->mu);
  return st;
}

int ms_store_set_quiet(ms_store *s, const char *key, const void *value, int64_t nbytes) {
  CHECK_STORE("set");
  if (nbytes < 0 || nbytes > (int64_t)MS_STORE_MAX_FRAME / 2 || (!value && nbytes))
    return ms_fail(MS_ERR_INVALID, "store set '%s': bad value (%lld bytes)", key,
                   (long long)nbytes);
  pthread_mutex_lock(&s->mu);
  int st = MS_OK;
  if (s->broken) {
    st = ms_fail(MS_ERR_IO, "store set '%s' on %s: the connection broke in an earlier call", key,
                 s->addr);
  } else {
    begin(s, MS_STORE_SET_QUIET);
    ms_cbuf_put_str(&s->out, key, strlen(key));
    ms_cbuf_put_str(&s->out, value, (size_t)nbytes);
    if (!s->out.data) {
      st = ms_fail(MS_ERR_OOM, "store set '%s': out of memory", key);
    } else {
      uint32_t n = (uint32_t)(s->out.len - 4);
      memcpy(s->out.data, &n, 4);
      int64_t start = ms_now_ms();
      int rc = ms_sock_send(s->fd, s->out.data, s->out.len, ms_deadline(s->timeout));
      if (rc) {
        s->broken = 1;
        st = ms_fail(rc == -1 ? MS_ERR_TIMEOUT : MS_ERR_IO,
                     "store set '%s' on %s: not sent after %lld ms (%s)", key, s->addr,
                     (long long)(ms_now_ms() - start), ms_sock_errstr(rc));
      }
    }
  }
  pthread_mutex_unlock(&s->mu);
  return st;
}

static int wait_locked(ms_store *s, const char *op, const char *const *keys, int n,
                       int64_t timeout_ms) {
  begin(s, MS_STORE_WAIT);
  ms_cbuf_put_i64(&s->out, timeout_ms);
  ms_cbuf_put_u32(&s->out, (uint32_t)n);
  for (int i = 0; i < n; i++)
    ms_cbuf_put_str(&s->out, keys[i], strlen(keys[i]));
  uint8_t code;
  ms_reader r;
  const char *k0 = n > 0 ? keys[0] : "";
  int st = roundtrip(s, op, k0, timeout_ms, &code, &r);
  if (st) return st;
  if (code == MS_REPLY_TIMEOUT) {
    const char *miss = "?";
    uint32_t mn = 1;
    ms_rd_str(&r, &miss, &mn);
    return ms_fail(MS_ERR_TIMEOUT,
                   "store %s: key '%.*s' did not appear on %s within %lld ms (%d key%s waited for)",
                   op, (int)mn, miss, s->addr, (long long)timeout_ms, n, n == 1 ? "" : "s");
  }
  return 0;
}

int ms_store_wait(ms_store *s, const char *const *keys, int n, int64_t timeout_ms) {
  if (!s) return ms_fail(MS_ERR_INVALID, "store wait: store is NULL");
  if (n < 0 || (n > 0 && !keys)) return ms_fail(MS_ERR_INVALID, "store wait: bad key list");
  for (int i = 0; i < n; i++)
    if (!keys[i]) return ms_fail(MS_ERR_INVALID, "store wait: key %d is NULL", i);
  pthread_mutex_lock(&s->mu);
  int st = wait_locked(s, "wait", keys, n, timeout_ms);
  pthread_mutex_unlock(&s->mu);
  return st;
}

int ms_store_get(ms_store *s, const char *key, int64_t timeout_ms, const void **value,
                 int64_t *nbytes) {
  CHECK_STORE("get");
  if (!value || !nbytes) return ms_fail(MS_ERR_INVALID, "store get '%s': NULL output", key);
  pthread_mutex_lock(&s->mu);
  int st = wait_locked(s, "get", &key, 1, timeout_ms);
  if (!st) {
    begin(s, MS_STORE_GET);
    ms_cbuf_put_str(&s->out, key, strlen(key));
    uint8_t code, found;
    ms_reader r;
    const char *v;
    uint32_t vn;
    st = roundtrip(s, "get", key, 0, &code, &r);
    if (!st && (ms_rd_u8(&r, &found) || ms_rd_str(&r, &v, &vn))) st = bad_reply(s, "get", key);
    if (!st && !found)
      st = ms_fail(MS_ERR_IO, "store get '%s' on %s: the key was deleted while waiting", key,
                   s->addr);
    if (!st) {
      *value = v;
      *nbytes = vn;
    }
  }
  pthread_mutex_unlock(&s->mu);
  return st;
}

int ms_store_add(ms_store *s, const char *key, int64_t delta, int64_t *result) {
  CHECK_STORE("add");
  pthread_mutex_lock(&s->mu);
  begin(s, MS_STORE_ADD);
  ms_cbuf_put_str(&s->out, key, strlen(key));
  ms_cbuf_put_i64(&s->out, delta);
  uint8_t code;
  ms_reader r;
  int64_t v = 0;
  int st = roundtrip(s, "add", key, 0, &code, &r);
  if (!st && ms_rd_i64(&r, &v)) st = bad_reply(s, "add", key);
  pthread_mutex_unlock(&s->mu);
  if (!st && result) *result = v;
  return st;
}

int ms_store_check(ms_store *s, const char *const *keys, int n, int *all_exist) {
  if (!s || !all_exist || n < 0 || (n > 0 && !keys))
    return ms_fail(MS_ERR_INVALID, "store check: bad arguments");
  for (int i = 0; i < n; i++)
    if (!keys[i]) return ms_fail(MS_ERR_INVALID, "store check: key %d is NULL", i);
  pthread_mutex_lock(&s->mu);
  begin(s, MS_STORE_CHECK);
  ms_cbuf_put_u32(&s->out, (uint32_t)n);
  for (int i = 0; i < n; i++)
    ms_cbuf_put_str(&s->out, keys[i], strlen(keys[i]));
  uint8_t code, all = 0;
  ms_reader r;
  const char *k0 = n > 0 ? keys[0] : "";
  int st = roundtrip(s, "check", k0, 0, &code, &r);
  if (!st && ms_rd_u8(&r, &all)) st = bad_reply(s, "check", k0);
  pthread_mutex_unlock(&s->mu);
  if (!st) *all_exist = all;
  return st;
}

int ms_store_delete(ms_store *s, const char *key, int *deleted) {
  CHECK_STORE("delete");
  pthread_mutex_lock(&s->mu);
  begin(s, MS_STORE_DELETE);
  ms_cbuf_put_str(&s->out, key, strlen(key));
  uint8_t code, del = 0;
  ms_reader r;
  int st = roundtrip(s, "delete", key, 0, &code, &r);
  if (!st && ms_rd_u8(&r, &del)) st = bad_reply(s, "delete", key);
  pthread_mutex_unlock(&s->mu);
  if (!st && deleted) *deleted = del;
  return st;
}

int ms_store_dead_ranks(ms_store *s, int world_size, int64_t stale_ms, int *ranks, int cap,
                        int *n) {
  if (!s || !n || world_size < 0 || (cap > 0 && !ranks))
    return ms_fail(MS_ERR_INVALID, "store dead_ranks: bad arguments");
  pthread_mutex_lock(&s->mu);
  begin(s, MS_STORE_DEAD);
  ms_cbuf_put_i64(&s->out, world_size);
  ms_cbuf_put_i64(&s->out, stale_ms);
  uint8_t code;
  ms_reader r;
  uint32_t nd = 0;
  int st = roundtrip(s, "dead_ranks", "", 0, &code, &r);
  if (!st && ms_rd_u32(&r, &nd)) st = bad_reply(s, "dead_ranks", "");
  for (uint32_t i = 0; !st && i < nd; i++) {
    int64_t v;
    if (ms_rd_i64(&r, &v)) {
      st = bad_reply(s, "dead_ranks", "");
      break;
    }
    if ((int)i < cap) ranks[i] = (int)v;
  }
  pthread_mutex_unlock(&s->mu);
  if (!st) *n = (int)nd;
  return st;
}

/* ---- heartbeats ---- */
static int send_simple(int fd, uint8_t code, int64_t arg, int with_arg) {
  char b[13];
  uint32_t n = with_arg ? 9 : 1;
  memcpy(b, &n, 4);
  b[4] = (char)code;
  memcpy(b + 5, &arg, 8);
  return ms_sock_send(fd, b, 4 + n, ms_deadline(1000));
}

static void *heartbeat_main(void *arg) {
  ms_store *s = arg;
  pthread_mutex_lock(&s->hb_mu);
  while (!s->hb_stop) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t ns = ts.tv_nsec + (s->hb_interval % 1000) * 1000000;
    ts.tv_sec += s->hb_interval / 1000 + ns / 1000000000;
    ts.tv_nsec = ns % 1000000000;
    pthread_cond_timedwait(&s->hb_cv, &s->hb_mu, &ts);
    if (s->hb_stop) break;
    pthread_mutex_unlock(&s->hb_mu);
    send_simple(s->hb_fd, MS_STORE_BEAT, 0, 0); /* a dead server is noticed by requests */
    pthread_mutex_lock(&s->hb_mu);
  }
  pthread_mutex_unlock(&s->hb_mu);
  return NULL;
}

int ms_store_heartbeat_start(ms_store *s, int rank, int64_t interval_ms) {
  if (!s || rank < 0 || interval_ms <= 0)
    return ms_fail(MS_ERR_INVALID, "store heartbeat: bad arguments (rank %d, interval %lld ms)",
                   rank, (long long)interval_ms);
  if (s->hb_started)
    return ms_fail(MS_ERR_INVALID, "store heartbeat: already running for rank %d", s->hb_rank);
  int st = ms_sock_connect("store heartbeat", s->host, s->port, ms_deadline(s->timeout), &s->hb_fd);
  if (st) return st;
  if (send_simple(s->hb_fd, MS_STORE_HELLO, rank, 1)) {
    ms_sock_close(s->hb_fd);
    s->hb_fd = -1;
    return ms_fail(MS_ERR_IO, "store heartbeat: cannot reach %s", s->addr);
  }
  s->hb_rank = rank;
  s->hb_interval = interval_ms;
  s->hb_stop = 0;
  if (pthread_create(&s->hb_thread, NULL, heartbeat_main, s) != 0) {
    ms_sock_close(s->hb_fd);
    s->hb_fd = -1;
    return ms_fail(MS_ERR_INTERNAL, "store heartbeat: cannot start a thread");
  }
  s->hb_started = 1;
  return 0;
}

static void heartbeat_stop(ms_store *s) {
  if (!s->hb_started) return;
  pthread_mutex_lock(&s->hb_mu);
  s->hb_stop = 1;
  pthread_cond_signal(&s->hb_cv);
  pthread_mutex_unlock(&s->hb_mu);
  pthread_join(s->hb_thread, NULL);
  send_simple(s->hb_fd, MS_STORE_BYE, 0, 0);
  ms_sock_close(s->hb_fd);
  s->hb_fd = -1;
  s->hb_started = 0;
}

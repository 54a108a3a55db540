/* store_server.c: the rendezvous key-value server, a libuv loop on its own thread. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

#include "comm/comm.h"

#define NBUCKETS 1024

typedef struct entry {
  char *key, *val;
  uint32_t klen, vlen;
  struct entry *next;
} entry;

typedef struct client {
  uv_tcp_t tcp;
  ms_store_server *srv;
  ms_cbuf in;
  int64_t rank; /* >= 0 on a heartbeat connection */
  int bye, closing;
  struct client *next;
} client;

typedef struct waiter {
  uv_timer_t timer;
  client *c;
  int nkeys;
  char **keys;
  uint32_t *klens;
  struct waiter *next;
} waiter;

typedef struct rank_state {
  int state; /* 0 unseen, 1 alive, 2 left cleanly, 3 connection dropped */
  uint64_t last_seen;
} rank_state;

struct ms_store_server {
  uv_loop_t loop;
  uv_tcp_t listener;
  uv_async_t stop;
  uv_thread_t thread;
  int port;
  entry *buckets[NBUCKETS];
  client *clients;
  waiter *waiters;
  rank_state *ranks;
  int64_t nranks;
};

/* ---- key table ---- */
static uint32_t hash(const char *k, uint32_t n) {
  uint32_t h = 2166136261u;
  for (uint32_t i = 0; i < n; i++)
    h = (h ^ (uint8_t)k[i]) * 16777619u;
  return h % NBUCKETS;
}
static entry **find(ms_store_server *s, const char *k, uint32_t n) {
  entry **e = &s->buckets[hash(k, n)];
  while (*e && !((*e)->klen == n && memcmp((*e)->key, k, n) == 0))
    e = &(*e)->next;
  return e;
}
static int put(ms_store_server *s, const char *k, uint32_t kn, const char *v, uint32_t vn) {
  entry **pe = find(s, k, kn);
  char *val = malloc(vn ? vn : 1);
  if (!val) return -1;
  memcpy(val, v, vn);
  if (*pe) {
    free((*pe)->val);
    (*pe)->val = val;
    (*pe)->vlen = vn;
    return 0;
  }
  entry *e = calloc(1, sizeof *e);
  char *key = malloc(kn ? kn : 1);
  if (!e || !key) {
    free(e);
    free(key);
    free(val);
    return -1;
  }
  memcpy(key, k, kn);
  *e = (entry){key, val, kn, vn, NULL};
  *pe = e;
  return 0;
}

/* ---- replies ---- */
typedef struct wreq {
  uv_write_t req;
  ms_cbuf b;
} wreq;
static void on_written(uv_write_t *req, int status) {
  (void)status;
  wreq *w = (wreq *)req;
  ms_cbuf_free(&w->b);
  free(w);
}
/* Starts a reply frame: length placeholder + code. */
static wreq *reply_begin(uint8_t code) {
  wreq *w = calloc(1, sizeof *w);
  if (!w) return NULL;
  uint32_t zero = 0;
  if (ms_cbuf_put(&w->b, &zero, 4) || ms_cbuf_put(&w->b, &code, 1)) {
    ms_cbuf_free(&w->b);
    free(w);
    return NULL;
  }
  return w;
}
static void reply_send(client *c, wreq *w) {
  if (!w) return;
  if (c->closing) {
    on_written(&w->req, 0);
    return;
  }
  uint32_t n = (uint32_t)(w->b.len - 4);
  memcpy(w->b.data, &n, 4);
  uv_buf_t buf = uv_buf_init(w->b.data, (unsigned)w->b.len);
  if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, on_written) != 0) on_written(&w->req, 0);
}
static void reply_code(client *c, uint8_t code) { reply_send(c, reply_begin(code)); }

/* ---- waiters ---- */
static void waiter_freed(uv_handle_t *h) {
  waiter *w = h->data;
  for (int i = 0; i < w->nkeys; i++)
    free(w->keys[i]);
  free(w->keys);
  free(w->klens);
  free(w);
}
static void waiter_finish(ms_store_server *s, waiter *w) {
  for (waiter **p = &s->waiters; *p; p = &(*p)->next)
    if (*p == w) {
      *p = w->next;
      break;
    }
  uv_timer_stop(&w->timer);
  uv_close((uv_handle_t *)&w->timer, waiter_freed);
}
/* Index of the first missing key, or -1 when all exist. */
static int waiter_missing(ms_store_server *s, waiter *w) {
  for (int i = 0; i < w->nkeys; i++)
    if (!*find(s, w->keys[i], w->klens[i])) return i;
  return -1;
}
static void on_wait_timeout(uv_timer_t *t) {
  waiter *w = t->data;
  int miss = waiter_missing(w->c->srv, w);
  wreq *r = reply_begin(MS_REPLY_TIMEOUT);
  if (r && miss >= 0) ms_cbuf_put_str(&r->b, w->keys[miss], w->klens[miss]);
  reply_send(w->c, r);
  waiter_finish(w->c->srv, w);
}
static void wake_waiters(ms_store_server *s) {
  waiter *w = s->waiters;
  while (w) {
    waiter *next = w->next;
    if (waiter_missing(s, w) < 0) {
      reply_code(w->c, MS_REPLY_OK);
      waiter_finish(s, w);
    }
    w = next;
  }
}

/* ---- ranks ---- */
static rank_state *rank_slot(ms_store_server *s, int64_t r) {
  if (r < 0 || r > (1 << 20)) return NULL;
  if (r >= s->nranks) {
    int64_t n = r + 16;
    rank_state *p = realloc(s->ranks, (size_t)n * sizeof *p);
    if (!p) return NULL;
    memset(p + s->nranks, 0, (size_t)(n - s->nranks) * sizeof *p);
    s->ranks = p;
    s->nranks = n;
  }
  return &s->ranks[r];
}

/* ---- requests ---- */
static void client_close(client *c);

static int handle_frame(client *c, const char *p, size_t n) {
  ms_store_server *s = c->srv;
  ms_reader r = {p, n};
  uint8_t code;
  const char *k, *v;
  uint32_t kn, vn;
  int64_t x, y;
  if (ms_rd_u8(&r, &code)) return -1;
  switch (code) {
  case MS_STORE_SET:
    if (ms_rd_str(&r, &k, &kn) || ms_rd_str(&r, &v, &vn)) return -1;
    reply_code(c, put(s, k, kn, v, vn) ? MS_REPLY_ERROR : MS_REPLY_OK);
    wake_waiters(s);
    return 0;
  case MS_STORE_SET_QUIET:
    if (ms_rd_str(&r, &k, &kn) || ms_rd_str(&r, &v, &vn)) return -1;
    if (put(s, k, kn, v, vn)) return -1; /* out of memory: no reply to carry it, drop the client */
    wake_waiters(s);
    return 0;
  case MS_STORE_GET: {
    if (ms_rd_str(&r, &k, &kn)) return -1;
    entry *e = *find(s, k, kn);
    wreq *w = reply_begin(MS_REPLY_OK);
    if (w) {
      uint8_t found = e != NULL;
      ms_cbuf_put(&w->b, &found, 1);
      ms_cbuf_put_str(&w->b, e ? e->val : "", e ? e->vlen : 0);
    }
    reply_send(c, w);
    return 0;
  }
  case MS_STORE_WAIT:
  case MS_STORE_CHECK: {
    uint32_t nk;
    x = -1;
    if ((code == MS_STORE_WAIT && ms_rd_i64(&r, &x)) || ms_rd_u32(&r, &nk) || nk > 1000000)
      return -1;
    waiter *w = calloc(1, sizeof *w);
    if (!w) return -1;
    w->keys = calloc(nk ? nk : 1, sizeof *w->keys);
    w->klens = calloc(nk ? nk : 1, sizeof *w->klens);
    w->c = c;
    w->timer.data = w;
    uv_timer_init(&s->loop, &w->timer);
    int bad = !w->keys || !w->klens;
    for (uint32_t i = 0; i < nk && !bad; i++) {
      if (ms_rd_str(&r, &k, &kn) || !(w->keys[i] = malloc(kn ? kn : 1))) {
        bad = 1;
        break;
      }
      memcpy(w->keys[i], k, kn);
      w->klens[i] = kn;
      w->nkeys++;
    }
    if (bad) {
      uv_close((uv_handle_t *)&w->timer, waiter_freed);
      return -1;
    }
    int miss = waiter_missing(s, w);
    if (code == MS_STORE_CHECK) {
      wreq *q = reply_begin(MS_REPLY_OK);
      uint8_t all = miss < 0;
      if (q) ms_cbuf_put(&q->b, &all, 1);
      reply_send(c, q);
      uv_close((uv_handle_t *)&w->timer, waiter_freed);
    } else if (miss < 0) {
      reply_code(c, MS_REPLY_OK);
      uv_close((uv_handle_t *)&w->timer, waiter_freed);
    } else {
      w->next = s->waiters;
      s->waiters = w;
      if (x >= 0) uv_timer_start(&w->timer, on_wait_timeout, (uint64_t)x, 0);
    }
    return 0;
  }
  case MS_STORE_ADD: {
    if (ms_rd_str(&r, &k, &kn) || ms_rd_i64(&r, &x)) return -1;
    entry *e = *find(s, k, kn);
    y = 0;
    if (e) {
      char tmp[32];
      uint32_t m = e->vlen < 31 ? e->vlen : 31;
      memcpy(tmp, e->val, m);
      tmp[m] = 0;
      y = strtoll(tmp, NULL, 10);
    }
    y += x;
    char num[32];
    int len = snprintf(num, sizeof num, "%lld", (long long)y);
    wreq *w = reply_begin(put(s, k, kn, num, (uint32_t)len) ? MS_REPLY_ERROR : MS_REPLY_OK);
    if (w) ms_cbuf_put_i64(&w->b, y);
    reply_send(c, w);
    wake_waiters(s);
    return 0;
  }
  case MS_STORE_DELETE: {
    if (ms_rd_str(&r, &k, &kn)) return -1;
    entry **pe = find(s, k, kn), *e = *pe;
    if (e) {
      *pe = e->next;
      free(e->key);
      free(e->val);
      free(e);
    }
    wreq *w = reply_begin(MS_REPLY_OK);
    uint8_t del = e != NULL;
    if (w) ms_cbuf_put(&w->b, &del, 1);
    reply_send(c, w);
    return 0;
  }
  case MS_STORE_HELLO:
  case MS_STORE_BEAT:
  case MS_STORE_BYE: {
    if (code == MS_STORE_HELLO) {
      if (ms_rd_i64(&r, &x)) return -1;
      c->rank = x;
    }
    rank_state *rs = rank_slot(s, c->rank);
    if (rs) {
      rs->state = code == MS_STORE_BYE ? 2 : 1;
      rs->last_seen = uv_now(&s->loop);
    }
    if (code == MS_STORE_BYE) c->bye = 1;
    return 0;
  }
  case MS_STORE_DEAD: {
    if (ms_rd_i64(&r, &x) || ms_rd_i64(&r, &y)) return -1;
    uint64_t now = uv_now(&s->loop);
    ms_cbuf list = {0};
    uint32_t nd = 0;
    for (int64_t i = 0; i < x; i++) {
      rank_state *rs = i < s->nranks ? &s->ranks[i] : NULL;
      if (rs && (rs->state == 3 || (rs->state == 1 && (int64_t)(now - rs->last_seen) > y))) {
        ms_cbuf_put_i64(&list, i);
        nd++;
      }
    }
    wreq *w = reply_begin(MS_REPLY_OK);
    if (w) {
      ms_cbuf_put_u32(&w->b, nd);
      ms_cbuf_put(&w->b, list.data, list.len);
    }
    ms_cbuf_free(&list);
    reply_send(c, w);
    return 0;
  }
  default: return -1;
  }
}

/* ---- connections ---- */
static void client_freed(uv_handle_t *h) {
  client *c = h->data;
  ms_cbuf_free(&c->in);
  free(c);
}
static void client_close(client *c) {
  if (c->closing) return;
  c->closing = 1;
  ms_store_server *s = c->srv;
  if (c->rank >= 0 && !c->bye) {
    rank_state *rs = rank_slot(s, c->rank);
    if (rs) rs->state = 3;
  }
  waiter *w = s->waiters;
  while (w) {
    waiter *next = w->next;
    if (w->c == c) waiter_finish(s, w);
    w = next;
  }
  for (client **p = &s->clients; *p; p = &(*p)->next)
    if (*p == c) {
      *p = c->next;
      break;
    }
  uv_close((uv_handle_t *)&c->tcp, client_freed);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  client *c = h->data;
  (void)suggested;
  if (ms_cbuf_reserve(&c->in, 65536)) {
    *buf = uv_buf_init(NULL, 0);
    return;
  }
  *buf = uv_buf_init(c->in.data + c->in.len, (unsigned)(c->in.cap - c->in.len));
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  client *c = st->data;
  (void)buf;
  if (nread < 0) {
    client_close(c);
    return;
  }
  c->in.len += (size_t)nread;
  size_t off = 0;
  while (c->in.len - off >= 4 && !c->closing) {
    uint32_t n;
    memcpy(&n, c->in.data + off, 4);
    if (n > MS_STORE_MAX_FRAME) {
      client_close(c);
      return;
    }
    if (c->in.len - off - 4 < n) break;
    if (handle_frame(c, c->in.data + off + 4, n)) {
      client_close(c); /* malformed request: drop the connection */
      return;
    }
    off += 4 + (size_t)n;
  }
  if (off) {
    memmove(c->in.data, c->in.data + off, c->in.len - off);
    c->in.len -= off;
  }
}

static void on_connection(uv_stream_t *server, int status) {
  ms_store_server *s = server->data;
  if (status < 0) return;
  client *c = calloc(1, sizeof *c);
  if (!c) return;
  c->srv = s;
  c->rank = -1;
  uv_tcp_init(&s->loop, &c->tcp);
  c->tcp.data = c;
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
    uv_close((uv_handle_t *)&c->tcp, client_freed);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  c->next = s->clients;
  s->clients = c;
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void on_stop(uv_async_t *a) {
  ms_store_server *s = a->data;
  while (s->clients)
    client_close(s->clients);
  uv_close((uv_handle_t *)&s->listener, NULL);
  uv_close((uv_handle_t *)&s->stop, NULL);
}

static void run_loop(void *arg) {
  ms_store_server *s = arg;
  /* a reply written to a vanished client must give EPIPE, not kill the process */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  uv_run(&s->loop, UV_RUN_DEFAULT);
}

static void free_server(ms_store_server *s) {
  for (int i = 0; i < NBUCKETS; i++) {
    entry *e = s->buckets[i];
    while (e) {
      entry *n = e->next;
      free(e->key);
      free(e->val);
      free(e);
      e = n;
    }
  }
  free(s->ranks);
  free(s);
}

int ms_store_server_start(const char *host, int port, ms_store_server **out) {
  if (!out) return ms_fail(MS_ERR_INVALID, "store server: out is NULL");
  *out = NULL;
  if (!host) host = "0.0.0.0";
  if (port < 0 || port > 65535)
    return ms_fail(MS_ERR_INVALID, "store server: port %d out of range [0, 65535]", port);
  ms_store_server *s = calloc(1, sizeof *s);
  if (!s) return ms_fail(MS_ERR_OOM, "store server: out of memory");
  int rc = uv_loop_init(&s->loop);
  if (rc) {
    free(s);
    return ms_fail(MS_ERR_INTERNAL, "store server: uv_loop_init: %s", uv_strerror(rc));
  }
  struct sockaddr_storage addr;
  rc = uv_ip4_addr(host, port, (struct sockaddr_in *)&addr);
  if (rc) rc = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr);
  uv_tcp_init(&s->loop, &s->listener);
  s->listener.data = s;
  const char *stage = "parse address";
  if (!rc) {
    stage = "bind";
    rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&addr, 0);
  }
  if (!rc) {
    stage = "listen";
    rc = uv_listen((uv_stream_t *)&s->listener, 128, on_connection);
  }
  if (!rc) {
    int len = sizeof addr;
    uv_tcp_getsockname(&s->listener, (struct sockaddr *)&addr, &len);
    s->port = addr.ss_family == AF_INET ? ntohs(((struct sockaddr_in *)&addr)->sin_port)
                                        : ntohs(((struct sockaddr_in6 *)&addr)->sin6_port);
    s->stop.data = s;
    uv_async_init(&s->loop, &s->stop, on_stop);
    stage = "start thread";
    rc = uv_thread_create(&s->thread, run_loop, s);
    if (rc) uv_close((uv_handle_t *)&s->stop, NULL);
  }
  if (rc) {
    uv_close((uv_handle_t *)&s->listener, NULL);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    uv_loop_close(&s->loop);
    free_server(s);
    return ms_fail(MS_ERR_IO, "store server: cannot %s on %s:%d: %s%s", stage, host, port,
                   uv_strerror(rc),
                   rc == UV_EADDRINUSE ? " (another process is listening on that port)" : "");
  }
  *out = s;
  return 0;
}

int ms_store_server_port(const ms_store_server *s) { return s ? s->port : -1; }

void ms_store_server_stop(ms_store_server *s) {
  if (!s) return;
  uv_async_send(&s->stop);
  uv_thread_join(&s->thread);
  uv_loop_close(&s->loop);
  free_server(s);
}

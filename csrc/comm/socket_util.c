/* socket_util.c: blocking TCP helpers with deadlines (poll), and the store's frame codec. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "comm/comm.h"

/* ---- buffers and readers ---- */
int ms_cbuf_reserve(ms_cbuf *b, size_t extra) {
  if (b->len + extra <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + extra)
    cap *= 2;
  char *d = realloc(b->data, cap);
  if (!d) return ms_fail(MS_ERR_OOM, "store: out of memory for a %zu-byte buffer", cap);
  b->data = d;
  b->cap = cap;
  return 0;
}
int ms_cbuf_put(ms_cbuf *b, const void *p, size_t n) {
  int st = ms_cbuf_reserve(b, n);
  if (st) return st;
  if (n) memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
}
int ms_cbuf_put_u32(ms_cbuf *b, uint32_t v) { return ms_cbuf_put(b, &v, 4); }
int ms_cbuf_put_i64(ms_cbuf *b, int64_t v) { return ms_cbuf_put(b, &v, 8); }
int ms_cbuf_put_str(ms_cbuf *b, const char *s, size_t n) {
  int st = ms_cbuf_put_u32(b, (uint32_t)n);
  return st ? st : ms_cbuf_put(b, s, n);
}
void ms_cbuf_free(ms_cbuf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

static int rd(ms_reader *r, void *v, size_t n) {
  if (r->left < n) return -1;
  memcpy(v, r->p, n);
  r->p += n;
  r->left -= n;
  return 0;
}
int ms_rd_u8(ms_reader *r, uint8_t *v) { return rd(r, v, 1); }
int ms_rd_u32(ms_reader *r, uint32_t *v) { return rd(r, v, 4); }
int ms_rd_i64(ms_reader *r, int64_t *v) { return rd(r, v, 8); }
int ms_rd_str(ms_reader *r, const char **s, uint32_t *n) {
  if (ms_rd_u32(r, n) || r->left < *n) return -1;
  *s = r->p;
  r->p += *n;
  r->left -= *n;
  return 0;
}

/* ---- time ---- */
int64_t ms_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
int64_t ms_deadline(int64_t timeout_ms) {
  return timeout_ms < 0 ? INT64_MAX : ms_now_ms() + timeout_ms;
}
static int poll_ms(int64_t deadline) {
  if (deadline == INT64_MAX) return 1000;
  int64_t left = deadline - ms_now_ms();
  if (left < 0) return 0;
  return left > 1000 ? 1000 : (int)left;
}

/* ---- sockets ---- */
static void set_nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL, 0) | O_NONBLOCK); }
static void set_nodelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}
void ms_sock_close(int fd) {
  if (fd >= 0) close(fd);
}

/* One non-blocking connect attempt: 0 connected, else errno. */
static int try_connect(const struct addrinfo *ai, int64_t deadline, int *out) {
  int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
  if (fd < 0) return errno;
  set_nonblock(fd);
  int err = 0;
  if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
    if (errno != EINPROGRESS) {
      err = errno;
    } else {
      for (;;) {
        struct pollfd p = {fd, POLLOUT, 0};
        int ms = poll_ms(deadline);
        int r = poll(&p, 1, ms);
        if (r < 0 && errno == EINTR) continue;
        if (r == 0 && ms_now_ms() >= deadline) {
          err = ETIMEDOUT;
          break;
        }
        if (r == 0) continue;
        socklen_t len = sizeof err;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        break;
      }
    }
  }
  if (err) {
    close(fd);
    return err;
  }
  set_nodelay(fd);
  *out = fd;
  return 0;
}

int ms_sock_connect(const char *what, const char *host, int port, int64_t deadline, int *fd) {
  char ports[16];
  snprintf(ports, sizeof ports, "%d", port);
  struct addrinfo hints = {0}, *res = NULL;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int64_t start = ms_now_ms();
  int gai = getaddrinfo(host, ports, &hints, &res);
  if (gai != 0)
    return ms_fail(MS_ERR_IO, "%s: cannot resolve host '%s' (port %d): %s", what, host, port,
                   gai_strerror(gai));
  int err = 0;
  for (;;) {
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
      err = try_connect(ai, deadline, fd);
      if (!err) {
        freeaddrinfo(res);
        return 0;
      }
    }
    if (ms_now_ms() >= deadline) break;
    /* refused or unreachable: the server may not be up yet; retry shortly */
    struct pollfd none;
    int ms = poll_ms(deadline);
    poll(&none, 0, ms < 50 ? ms : 50);
    if (ms_now_ms() >= deadline) break;
  }
  freeaddrinfo(res);
  int status = err == ETIMEDOUT ? MS_ERR_TIMEOUT : MS_ERR_IO;
  return ms_fail(status, "%s: cannot connect to %s:%d within %lld ms (last error: %s)", what, host,
                 port, (long long)(ms_now_ms() - start), strerror(err));
}

int ms_sock_listen(const char *what, const char *host, int *fd, int *port) {
  struct addrinfo hints = {0}, *res = NULL;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST;
  int gai = getaddrinfo(host, "0", &hints, &res);
  if (gai != 0)
    return ms_fail(MS_ERR_IO, "%s: bad listen address '%s': %s", what, host, gai_strerror(gai));
  int s = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
  if (s < 0 || bind(s, res->ai_addr, res->ai_addrlen) != 0 || listen(s, 64) != 0) {
    int e = errno;
    if (s >= 0) close(s);
    freeaddrinfo(res);
    return ms_fail(MS_ERR_IO, "%s: cannot listen on %s: %s", what, host, strerror(e));
  }
  freeaddrinfo(res);
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  getsockname(s, (struct sockaddr *)&ss, &len);
  *port = ss.ss_family == AF_INET ? ntohs(((struct sockaddr_in *)&ss)->sin_port)
                                  : ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  set_nonblock(s);
  *fd = s;
  return 0;
}

int ms_sock_accept(const char *what, int lfd, int64_t deadline, int *fd) {
  for (;;) {
    int s = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (s >= 0) {
      fcntl(s, F_SETFL, fcntl(s, F_GETFL, 0) & ~O_NONBLOCK);
      set_nodelay(s);
      *fd = s;
      return 0;
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
      return ms_fail(MS_ERR_IO, "%s: accept failed: %s", what, strerror(errno));
    if (ms_now_ms() >= deadline) return MS_ERR_TIMEOUT;
    struct pollfd p = {lfd, POLLIN, 0};
    poll(&p, 1, poll_ms(deadline));
  }
}

const char *ms_sock_errstr(int code) {
  return code == -1 ? "timed out" : code == -2 ? "connection closed by peer" : strerror(errno);
}

/* Moves bytes in both directions until both are done; MSG_DONTWAIT keeps fds blocking. */
int ms_sock_sendrecv(int sfd, const void *sp, size_t sn, int rfd, void *rp, size_t rn,
                     int64_t deadline, int *which) {
  const char *s = sp;
  char *r = rp;
  int dummy;
  if (!which) which = &dummy;
  while (sn > 0 || rn > 0) {
    struct pollfd p[2];
    int np = 0, is = -1, ir = -1;
    if (sn > 0) {
      p[np] = (struct pollfd){sfd, POLLOUT, 0};
      is = np++;
    }
    if (rn > 0) {
      p[np] = (struct pollfd){rfd, POLLIN, 0};
      ir = np++;
    }
    int ms = poll_ms(deadline);
    int pr = poll(p, np, ms);
    if (pr < 0) {
      if (errno == EINTR) continue;
      *which = 0;
      return -3;
    }
    if (pr == 0) {
      if (ms_now_ms() >= deadline) {
        *which = rn > 0 ? 1 : 0;
        return -1;
      }
      continue;
    }
    if (is >= 0 && p[is].revents) {
      ssize_t k = send(sfd, s, sn, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        *which = 0;
        return errno == EPIPE || errno == ECONNRESET ? -2 : -3;
      }
      if (k > 0) {
        s += k;
        sn -= (size_t)k;
      }
    }
    if (ir >= 0 && p[ir].revents) {
      ssize_t k = recv(rfd, r, rn, MSG_DONTWAIT);
      if (k == 0) {
        *which = 1;
        return -2;
      }
      if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        *which = 1;
        return errno == ECONNRESET ? -2 : -3;
      }
      if (k > 0) {
        r += k;
        rn -= (size_t)k;
      }
    }
  }
  return 0;
}

int ms_sock_send(int fd, const void *p, size_t n, int64_t deadline) {
  return ms_sock_sendrecv(fd, p, n, -1, NULL, 0, deadline, NULL);
}
int ms_sock_recv(int fd, void *p, size_t n, int64_t deadline) {
  return ms_sock_sendrecv(-1, NULL, 0, fd, p, n, deadline, NULL);
}

int ms_sock_local_host(int fd, char *buf, size_t cap) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) return -1;
  if (getnameinfo((struct sockaddr *)&ss, len, buf, (socklen_t)cap, NULL, 0, NI_NUMERICHOST))
    return -1;
  return 0;
}

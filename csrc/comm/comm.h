/* comm.h: internals shared by the store client/server and the CPU communicator. */
#ifndef MS_COMM_H
#define MS_COMM_H

#include <stdint.h>

#include "core/internal.h"

/* Store protocol: a frame is [u32 length of the rest][u8 code][fields]; strings are
 * [u32 length][bytes], integers little-endian i64. Replies carry a status code. */
enum {
  MS_STORE_SET = 1,       /* key, value -> ok */
  MS_STORE_GET = 2,       /* key -> found(u8), value */
  MS_STORE_WAIT = 3,      /* i64 timeout_ms, u32 n, keys -> ok | timeout (+ missing key) */
  MS_STORE_ADD = 4,       /* key, i64 delta -> i64 value */
  MS_STORE_CHECK = 5,     /* u32 n, keys -> u8 all exist */
  MS_STORE_DELETE = 6,    /* key -> u8 deleted */
  MS_STORE_HELLO = 7,     /* i64 rank: this connection carries rank's heartbeats (no reply) */
  MS_STORE_BEAT = 8,      /* (no reply) */
  MS_STORE_BYE = 9,       /* rank leaves cleanly (no reply) */
  MS_STORE_DEAD = 10,     /* i64 world, i64 stale_ms -> u32 n, i64 ranks */
  MS_STORE_SET_QUIET = 11 /* key, value (no reply: later requests on the connection see it) */
};
enum { MS_REPLY_OK = 0, MS_REPLY_TIMEOUT = 1, MS_REPLY_ERROR = 2 };
#define MS_STORE_MAX_FRAME (1u << 30)

/* ---- growable byte buffer ---- */
typedef struct ms_cbuf {
  char *data;
  size_t len, cap;
} ms_cbuf;
int ms_cbuf_reserve(ms_cbuf *b, size_t extra);
int ms_cbuf_put(ms_cbuf *b, const void *p, size_t n);
int ms_cbuf_put_u32(ms_cbuf *b, uint32_t v);
int ms_cbuf_put_i64(ms_cbuf *b, int64_t v);
int ms_cbuf_put_str(ms_cbuf *b, const char *s, size_t n);
void ms_cbuf_free(ms_cbuf *b);

/* ---- reading fields out of a frame ---- */
typedef struct ms_reader {
  const char *p;
  size_t left;
} ms_reader;
int ms_rd_u8(ms_reader *r, uint8_t *v);
int ms_rd_u32(ms_reader *r, uint32_t *v);
int ms_rd_i64(ms_reader *r, int64_t *v);
/* Points *s at the bytes in the frame (not NUL-terminated). */
int ms_rd_str(ms_reader *r, const char **s, uint32_t *n);

/* ---- blocking sockets with deadlines (socket_util.c) ---- */
int64_t ms_now_ms(void);
/* deadline for timeout_ms from now; INT64_MAX when timeout_ms < 0 */
int64_t ms_deadline(int64_t timeout_ms);
/* Connects to host:port, retrying refused attempts until deadline. what names the
 * caller in errors. Returns an fd >= 0, or a negative status with the message set. */
int ms_sock_connect(const char *what, const char *host, int port, int64_t deadline, int *fd);
/* A listening socket on host (numeric IPv4/IPv6) with a free port. */
int ms_sock_listen(const char *what, const char *host, int *fd, int *port);
/* Accepts one connection before deadline. */
int ms_sock_accept(const char *what, int lfd, int64_t deadline, int *fd);
/* Sends / receives exactly n bytes before deadline. Return 0, or -1 (timeout) / -2 (peer
 * closed) / -3 (other error, errno kept) without setting any message. */
int ms_sock_send(int fd, const void *p, size_t n, int64_t deadline);
int ms_sock_recv(int fd, void *p, size_t n, int64_t deadline);
/* Sends sn bytes on sfd while receiving rn bytes on rfd (the ring step). */
int ms_sock_sendrecv(int sfd, const void *sp, size_t sn, int rfd, void *rp, size_t rn,
                     int64_t deadline, int *which);
const char *ms_sock_errstr(int code);
/* The numeric local address of a connected socket ("127.0.0.1"). */
int ms_sock_local_host(int fd, char *buf, size_t cap);
void ms_sock_close(int fd);

/* ---- store client internals used by the communicator ---- */
const char *ms_store_addr(const ms_store *s); /* "host:port" */
int64_t ms_store_default_timeout(const ms_store *s);
int ms_store_fd(const ms_store *s);
/* Counter of communicators made on this client (names their keys). */
int ms_store_next_comm_id(ms_store *s);
/* Sets key without waiting for the server (a communicator announcing its sequence numbers:
 * one send, no round trip per collective). Later requests on s are answered after it. */
int ms_store_set_quiet(ms_store *s, const char *key, const void *value, int64_t nbytes);
/* A second client on the same server (the communicator's own connection). */
int ms_store_reconnect(const ms_store *s, ms_store **out);

#endif

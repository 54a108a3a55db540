/* watchdog.c: a liveness thread that ends a rank when a peer is gone (silent heartbeat, or
 * the store unreachable), so a cut link stops the job in seconds instead of a collective timeout.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "comm.h"

struct ms_watchdog {
  char host[256];
  int port, rank, world;
  int64_t interval_ms, stale_ms;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int stop;
};

/* Ends the process: the message on stderr (the launcher shows it), exit status 1. */
static void die(const char *msg) {
  fprintf(stderr, "%s\n", msg);
  fflush(stderr);
  _exit(1);
}

/* One check; returns 1 when the store answered. Dead ranks other than ours end the process. */
static int check_once(ms_watchdog *w, ms_store **st) {
  if (!*st && ms_store_connect(w->host, w->port, w->interval_ms, st) != MS_OK) {
    *st = NULL;
    return 0;
  }
  int n = 0, cap = w->world > 0 ? w->world : 1;
  int *dead = malloc(sizeof(int) * (size_t)cap);
  if (!dead) return 1;
  if (ms_store_dead_ranks(*st, w->world, w->stale_ms, dead, cap, &n) != MS_OK) {
    free(dead);
    ms_store_close(*st); /* a timed-out request leaves the connection unusable */
    *st = NULL;
    return 0;
  }
  for (int i = 0; i < n && i < cap; i++) {
    if (dead[i] == w->rank) continue;
    char msg[512];
    snprintf(msg, sizeof msg,
             "moonseg: rank %d: rank %d is unreachable: no heartbeat for over %.1f s (liveness "
             "timeout); stopping this rank",
             w->rank, dead[i], (double)w->stale_ms / 1000.0);
    free(dead);
    die(msg);
  }
  free(dead);
  return 1;
}

static void *watchdog_main(void *arg) {
  ms_watchdog *w = arg;
  ms_store *st = NULL;
  int64_t last_ok = ms_now_ms();
  pthread_mutex_lock(&w->mu);
  while (!w->stop) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t ns = ts.tv_nsec + (w->interval_ms % 1000) * 1000000;
    ts.tv_sec += w->interval_ms / 1000 + ns / 1000000000;
    ts.tv_nsec = ns % 1000000000;
    pthread_cond_timedwait(&w->cv, &w->mu, &ts);
    if (w->stop) break;
    pthread_mutex_unlock(&w->mu);
    int ok = check_once(w, &st);
    int64_t now = ms_now_ms();
    if (ok) last_ok = now;
    pthread_mutex_lock(&w->mu);
    if (!ok && !w->stop && now - last_ok > w->stale_ms) {
      char msg[512];
      snprintf(msg, sizeof msg,
               "moonseg: rank %d: rank 0 (the store at %s:%d) is unreachable: no answer for "
               "%.1f s (liveness timeout %.1f s); stopping this rank",
               w->rank, w->host, w->port, (double)(now - last_ok) / 1000.0,
               (double)w->stale_ms / 1000.0);
      die(msg);
    }
  }
  pthread_mutex_unlock(&w->mu);
  if (st) ms_store_close(st);
  return NULL;
}

int ms_watchdog_start(const char *host, int port, int rank, int world_size, int64_t interval_ms,
                      int64_t stale_ms, ms_watchdog **out) {
  if (!host || !out || strlen(host) >= 256 || port <= 0 || rank < 0 || world_size < 1 ||
      interval_ms < 1 || stale_ms < interval_ms)
    return ms_fail(MS_ERR_INVALID,
                   "watchdog: bad arguments (host %s, port %d, rank %d, world %d, interval %lld "
                   "ms, stale %lld ms)",
                   host ? host : "NULL", port, rank, world_size, (long long)interval_ms,
                   (long long)stale_ms);
  ms_watchdog *w = calloc(1, sizeof *w);
  if (!w) return ms_fail(MS_ERR_OOM, "watchdog: out of memory");
  snprintf(w->host, sizeof w->host, "%s", host);
  w->port = port;
  w->rank = rank;
  w->world = world_size;
  w->interval_ms = interval_ms;
  w->stale_ms = stale_ms;
  pthread_mutex_init(&w->mu, NULL);
  pthread_cond_init(&w->cv, NULL);
  if (pthread_create(&w->thread, NULL, watchdog_main, w) != 0) {
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
    return ms_fail(MS_ERR_INTERNAL, "watchdog: cannot start a thread");
  }
  *out = w;
  return MS_OK;
}

void ms_watchdog_stop(ms_watchdog *w) {
  if (!w) return;
  pthread_mutex_lock(&w->mu);
  w->stop = 1;
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->mu);
  pthread_join(w->thread, NULL);
  pthread_mutex_destroy(&w->mu);
  pthread_cond_destroy(&w->cv);
  free(w);
}

/* shm_ring.h: byte channels in shared memory between the ranks of one host (the CPU
 * communicator's same-host transport). Each rank owns one segment: the ring its previous rank
 * writes into, and its doorbell (a futex word) that both neighbours ring when they made
 * progress it may be waiting for. */
#ifndef MS_SHM_RING_H
#define MS_SHM_RING_H

#include <stddef.h>
#include <stdint.h>

typedef struct ms_shm ms_shm;

/* 1 where this build can use the transport (Linux: shm_open + futex). */
int ms_shm_supported(void);
/* Creates and maps this rank's segment with a ring of cap bytes (rounded to 4 KiB) under a
 * fresh name, written to name (cap >= 64). Sets the message on failure. */
int ms_shm_create(const char *tag, size_t cap, ms_shm **out, char *name, size_t namecap);
/* Maps a neighbour's segment by the name it published. */
int ms_shm_open(const char *name, ms_shm **out);
/* Removes the name (the mappings stay valid); idempotent. */
void ms_shm_unlink(ms_shm *s);
void ms_shm_close(ms_shm *s);

/* Where received bytes go: copied to dst + off, or handed to fn (the reduce-on-receive). */
typedef struct ms_shm_sink {
  void (*fn)(void *arg, size_t off, const void *p, size_t n);
  void *arg;
} ms_shm_sink;

/* Liveness check while waiting: returns 0 while the peers look alive, else -2 (peer closed)
 * and sets *which (0 next, 1 previous). */
typedef int (*ms_shm_alive_fn)(void *arg, int *which);

/* One ring step: sends sn bytes into next's ring (segment out) while receiving rn bytes from
 * own's ring (written by prev, whose segment is prev_seg: its doorbell is rung when space is
 * freed). Received bytes go to rp or, when sink is non-NULL, to the sink. Every message is
 * padded to 8 bytes in the ring, so a sink sees element-aligned pieces. Before sleeping on its
 * doorbell it polls it spin times (-1: MS_COMM_SPIN, default 300), then, when spin is not 0,
 * yields the core MS_COMM_YIELD times (default 1000) looking again each time. Returns 0, -1
 * (deadline passed; *which says the side that was waited for) or alive's status. */
int ms_shm_xfer(ms_shm *own, ms_shm *out, ms_shm *prev_seg, const void *sp, size_t sn, void *rp,
                size_t rn, const ms_shm_sink *sink, int spin, int64_t deadline,
                ms_shm_alive_fn alive, void *alive_arg, int *which);

#endif

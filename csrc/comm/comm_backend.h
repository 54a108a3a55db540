/* comm_backend.h: the communicator table: every communicator (the CPU ring now, NCCL later)
 * starts with its table, and the public ms_comm_* / ms_work_* calls (comm/comm.c) dispatch
 * through it. Arguments arrive validated for NULL communicators and work handles only. */
#ifndef MS_COMM_BACKEND_H
#define MS_COMM_BACKEND_H
#include "core/internal.h"

typedef struct ms_comm_backend {
  const char *name; /* "cpu ring", "nccl" */
  int (*rank)(const ms_comm *c);
  int (*world_size)(const ms_comm *c);
  /* out NULL: blocking; else the work handle of the queued collective */
  int (*all_reduce)(ms_comm *c, ms_tensor *t, ms_comm_op op, ms_work **out);
  int (*broadcast)(ms_comm *c, ms_tensor *t, int root, ms_work **out);
  int (*all_gather)(ms_comm *c, const ms_tensor *x, ms_tensor *out);
  int (*reduce_scatter)(ms_comm *c, const ms_tensor *x, ms_tensor *out, ms_comm_op op);
  int (*barrier)(ms_comm *c);
  void (*destroy)(ms_comm *c);
  /* work handles: completion is an event (core/backend.h) the communicator records */
  int (*work_wait)(ms_work *w, int64_t timeout_ms);
  int (*work_is_completed)(ms_work *w);
  void (*work_free)(ms_work *w);
} ms_comm_backend;

/* The first member of every communicator and every work handle. */
typedef struct ms_comm_head {
  const ms_comm_backend *be;
} ms_comm_head;

#endif

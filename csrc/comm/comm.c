/* comm.c: the public communicator calls, dispatched through each communicator's table. */
#include "comm/comm_backend.h"

static const ms_comm_backend *be_of(const void *c) { return ((const ms_comm_head *)c)->be; }

static int no_comm(const char *op) {
  return ms_fail(MS_ERR_INVALID, "%s: communicator is NULL", op);
}

int ms_comm_rank(const ms_comm *c) { return c ? be_of(c)->rank(c) : -1; }
int ms_comm_world_size(const ms_comm *c) { return c ? be_of(c)->world_size(c) : -1; }
const char *ms_comm_backend_name(const ms_comm *c) { return c ? be_of(c)->name : "none"; }

int ms_comm_all_reduce(ms_comm *c, ms_tensor *t, ms_comm_op op) {
  return c ? be_of(c)->all_reduce(c, t, op, NULL) : no_comm("all_reduce");
}
int ms_comm_all_reduce_async(ms_comm *c, ms_tensor *t, ms_comm_op op, ms_work **out) {
  if (!c) return no_comm("all_reduce");
  if (!out) return ms_fail(MS_ERR_INVALID, "all_reduce: out is NULL");
  return be_of(c)->all_reduce(c, t, op, out);
}
int ms_comm_broadcast(ms_comm *c, ms_tensor *t, int root) {
  return c ? be_of(c)->broadcast(c, t, root, NULL) : no_comm("broadcast");
}
int ms_comm_broadcast_async(ms_comm *c, ms_tensor *t, int root, ms_work **out) {
  if (!c) return no_comm("broadcast");
  if (!out) return ms_fail(MS_ERR_INVALID, "broadcast: out is NULL");
  return be_of(c)->broadcast(c, t, root, out);
}
int ms_comm_all_gather(ms_comm *c, const ms_tensor *x, ms_tensor *out) {
  return c ? be_of(c)->all_gather(c, x, out) : no_comm("all_gather");
}
int ms_comm_reduce_scatter(ms_comm *c, const ms_tensor *x, ms_tensor *out, ms_comm_op op) {
  return c ? be_of(c)->reduce_scatter(c, x, out, op) : no_comm("reduce_scatter");
}
int ms_comm_barrier(ms_comm *c) { return c ? be_of(c)->barrier(c) : no_comm("barrier"); }
void ms_comm_free(ms_comm *c) {
  if (c) be_of(c)->destroy(c);
}

int ms_work_wait(ms_work *w, int64_t timeout_ms) {
  if (!w) return ms_fail(MS_ERR_INVALID, "work wait: work is NULL");
  return be_of(w)->work_wait(w, timeout_ms);
}
int ms_work_is_completed(ms_work *w) { return w ? be_of(w)->work_is_completed(w) : 1; }
void ms_work_free(ms_work *w) {
  if (w) be_of(w)->work_free(w);
}

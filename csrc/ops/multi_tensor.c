/* multi_tensor.c: validated entry points of the multi-tensor steps (loss-scale unscale and
 * update, fused SGD / AdamW, global norm), dispatched through the backend table. */
#include <math.h>

#include "../core/backend.h"

/* The backend entry of op for ref's device and dtype, or NULL with the shared message. */
static const ms_backend *mt_backend(ms_op_id op, const ms_tensor *ref) {
  return ms_backend_get(op, NULL, ref, ref->dtype, NULL);
}
#define MT_CALL(id, entry, ...)                                                                    \
  do {                                                                                             \
    const ms_backend *be_ = mt_backend(id, ref);                                                   \
    return be_ ? be_->entry(ctx, __VA_ARGS__) : MS_ERR_UNSUPPORTED;                                \
  } while (0)

/* Each t[i] non-NULL, contiguous, floating point, on ref's device (ref = first seen). */
static int check_list(const char *op, const char *name, ms_tensor *const *t, int n,
                      const ms_tensor **ref) {
  if (n > 0 && !t) return ms_fail(MS_ERR_INVALID, "%s: %s is NULL", op, name);
  for (int i = 0; i < n; i++) {
    if (!t[i]) return ms_fail(MS_ERR_INVALID, "%s: %s[%d] is NULL", op, name, i);
    if (!t[i]->storage) return ms_fail(MS_ERR_FREED, "%s: %s[%d] was freed", op, name, i);
    if (!ms_dtype_is_float(t[i]->dtype))
      return ms_fail(MS_ERR_DTYPE, "%s: %s[%d] must be floating point, got %s", op, name, i,
                     ms_desc(t[i]));
    if (!ms_is_contiguous(t[i]))
      return ms_fail(MS_ERR_INVALID, "%s: %s[%d] must be contiguous, got %s", op, name, i,
                     ms_desc(t[i]));
    if (!*ref) *ref = t[i];
    if (ms_check_same_device(op, *ref, t[i])) return MS_ERR_DEVICE;
  }
  return MS_OK;
}

/* b[i] has a[i]'s element count (and dtype dt unless dt < 0). */
static int check_pair(const char *op, const char *an, ms_tensor *const *a, const char *bn,
                      ms_tensor *const *b, int n, int dt) {
  for (int i = 0; i < n; i++) {
    if (ms_numel(a[i]) != ms_numel(b[i]))
      return ms_fail(MS_ERR_INVALID, "%s: %s[%d] %s and %s[%d] %s differ in size", op, an, i,
                     ms_desc(a[i]), bn, i, ms_desc(b[i]));
    if (dt >= 0 && b[i]->dtype != (ms_dtype)dt)
      return ms_fail(MS_ERR_DTYPE, "%s: %s[%d] must be %s, got %s", op, bn, i,
                     ms_dtype_name((ms_dtype)dt), ms_desc(b[i]));
  }
  return MS_OK;
}

/* A [numel] tensor of dtype dt on ref's device (NULL allowed when optional). */
static int check_small(const char *op, const char *name, const ms_tensor *t, ms_dtype dt,
                       int64_t numel, const ms_tensor **ref, int optional) {
  if (!t) return optional ? MS_OK : ms_fail(MS_ERR_INVALID, "%s: %s is NULL", op, name);
  if (!t->storage) return ms_fail(MS_ERR_FREED, "%s: %s was freed", op, name);
  if (t->dtype != dt || ms_numel(t) != numel || !ms_is_contiguous(t))
    return ms_fail(MS_ERR_INVALID,
                   "%s: %s must be a contiguous %s tensor of %lld element(s), "
                   "got %s",
                   op, name, ms_dtype_name(dt), (long long)numel, ms_desc(t));
  if (!*ref) *ref = t;
  return ms_check_same_device(op, *ref, t) ? MS_ERR_DEVICE : MS_OK;
}

static int check_n(const char *op, int n) {
  return n < 0 ? ms_fail(MS_ERR_INVALID, "%s: tensor count must be >= 0, got %d", op, n) : MS_OK;
}

int ms_mt_unscale_(ms_context *ctx, ms_tensor *const *grads, int n, const ms_tensor *scale,
                   ms_tensor *found_inf) {
  const char *op = "mt_unscale_";
  const ms_tensor *ref = NULL;
  int st;
  if ((st = check_n(op, n)) || (st = check_list(op, "grads", grads, n, &ref)) ||
      (st = check_small(op, "scale", scale, MS_F32, 1, &ref, 0)) ||
      (st = check_small(op, "found_inf", found_inf, MS_F32, 1, &ref, 0)))
    return st;
  if (!ref) return MS_OK;
  MT_CALL(MS_OP_MT_UNSCALE, mt_unscale, grads, n, scale, found_inf);
}

int ms_mt_scale_update(ms_context *ctx, ms_tensor *scale, ms_tensor *counters,
                       const ms_tensor *found_inf, const ms_scaler_params *p) {
  const char *op = "mt_scale_update";
  const ms_tensor *ref = NULL;
  int st;
  if (!p) return ms_fail(MS_ERR_INVALID, "%s: params are NULL", op);
  if ((st = check_small(op, "scale", scale, MS_F32, 1, &ref, 0)) ||
      (st = check_small(op, "counters", counters, MS_I64, 2, &ref, 0)) ||
      (st = check_small(op, "found_inf", found_inf, MS_F32, 1, &ref, 0)))
    return st;
  if (p->dynamic &&
      (p->growth_interval < 1 || !(p->growth_factor > 1) || !(p->backoff_factor > 0) ||
       !(p->backoff_factor < 1) || !(p->min_scale > 0) || !(p->max_scale >= p->min_scale) ||
       !isfinite(p->max_scale) || !isfinite(p->growth_factor)))
    return ms_fail(MS_ERR_INVALID,
                   "%s: need growth_interval >= 1, growth_factor > 1, 0 < backoff_factor < 1 and "
                   "0 < min_scale <= max_scale < inf; got %d, %g, %g, %g, %g",
                   op, p->growth_interval, p->growth_factor, p->backoff_factor, p->min_scale,
                   p->max_scale);
  MT_CALL(MS_OP_MT_SCALE_UPDATE, mt_scale_update, scale, counters, found_inf, p);
}

/* Params, grads, masters (f32 when given): the checks the two optimizer steps share. */
static int check_step(const char *op, ms_tensor *const *params, ms_tensor *const *grads,
                      ms_tensor *const *master, int n, const ms_tensor **ref) {
  int st;
  if ((st = check_n(op, n)) || (st = check_list(op, "params", params, n, ref)) ||
      (st = check_list(op, "grads", grads, n, ref)) ||
      (st = check_pair(op, "params", params, "grads", grads, n, -1)))
    return st;
  if (master && ((st = check_list(op, "master", master, n, ref)) ||
                 (st = check_pair(op, "params", params, "master", master, n, MS_F32))))
    return st;
  return MS_OK;
}

/* state[i] matches the tensor the step updates (master[i] or params[i]) in size and dtype. */
static int check_state(const char *op, const char *name, ms_tensor *const *state,
                       ms_tensor *const *params, ms_tensor *const *master, int n,
                       const ms_tensor **ref) {
  int st = check_list(op, name, state, n, ref);
  for (int i = 0; !st && i < n; i++) {
    ms_tensor *w = master ? master[i] : params[i];
    st = check_pair(op, master ? "master" : "params", &w, name, &state[i], 1, w->dtype);
  }
  return st;
}

int ms_mt_sgd_step(ms_context *ctx, ms_tensor *const *params, ms_tensor *const *grads,
                   ms_tensor *const *momentum_bufs, ms_tensor *const *master, int n,
                   const ms_sgd_params *p, const ms_tensor *found_inf) {
  const char *op = "mt_sgd_step";
  const ms_tensor *ref = NULL;
  int st;
  if (!p) return ms_fail(MS_ERR_INVALID, "%s: params are NULL", op);
  if (!isfinite(p->lr) || !isfinite(p->momentum) || !isfinite(p->weight_decay))
    return ms_fail(MS_ERR_INVALID, "%s: lr %g, momentum %g, weight_decay %g must be finite", op,
                   p->lr, p->momentum, p->weight_decay);
  if ((st = check_step(op, params, grads, master, n, &ref))) return st;
  if (p->momentum != 0 &&
      (st = check_state(op, "momentum_bufs", momentum_bufs, params, master, n, &ref)))
    return st;
  if ((st = check_small(op, "found_inf", found_inf, MS_F32, 1, &ref, 1))) return st;
  if (!ref) return MS_OK;
  MT_CALL(MS_OP_MT_SGD, mt_sgd, params, grads, momentum_bufs, master, n, p, found_inf);
}

int ms_mt_adamw_step(ms_context *ctx, ms_tensor *const *params, ms_tensor *const *grads,
                     ms_tensor *const *exp_avg, ms_tensor *const *exp_avg_sq,
                     ms_tensor *const *master, int n, const ms_adamw_params *p, ms_tensor *step,
                     const ms_tensor *found_inf) {
  const char *op = "mt_adamw_step";
  const ms_tensor *ref = NULL;
  int st;
  if (!p) return ms_fail(MS_ERR_INVALID, "%s: params are NULL", op);
  if (!isfinite(p->lr) || !isfinite(p->weight_decay) || !(p->beta1 >= 0 && p->beta1 < 1) ||
      !(p->beta2 >= 0 && p->beta2 < 1) || !(p->eps > 0))
    return ms_fail(MS_ERR_INVALID,
                   "%s: need finite lr and weight_decay, betas in [0, 1), eps > 0; got lr %g, "
                   "betas (%g, %g), eps %g, weight_decay %g",
                   op, p->lr, p->beta1, p->beta2, p->eps, p->weight_decay);
  if ((st = check_step(op, params, grads, master, n, &ref)) ||
      (st = check_state(op, "exp_avg", exp_avg, params, master, n, &ref)) ||
      (st = check_state(op, "exp_avg_sq", exp_avg_sq, params, master, n, &ref)) ||
      (st = check_small(op, "step", step, MS_I64, 1, &ref, 0)) ||
      (st = check_small(op, "found_inf", found_inf, MS_F32, 1, &ref, 1)))
    return st;
  MT_CALL(MS_OP_MT_ADAMW, mt_adamw, params, grads, exp_avg, exp_avg_sq, master, n, p, step,
          found_inf);
}

int ms_mt_norm(ms_context *ctx, ms_tensor *const *ts, int n, ms_tensor *out) {
  const char *op = "mt_norm";
  const ms_tensor *ref = NULL;
  int st;
  if ((st = check_n(op, n)) || (st = check_list(op, "tensors", ts, n, &ref)) ||
      (st = check_small(op, "out", out, MS_F32, 1, &ref, 0)))
    return st;
  MT_CALL(MS_OP_MT_NORM, mt_norm, ts, n, out);
}

int ms_mt_clip_(ms_context *ctx, ms_tensor *const *ts, int n, const ms_tensor *norm,
                double max_norm) {
  const char *op = "mt_clip_";
  const ms_tensor *ref = NULL;
  int st;
  if (!(max_norm > 0) || !isfinite(max_norm))
    return ms_fail(MS_ERR_INVALID, "%s: max_norm must be finite and > 0, got %g", op, max_norm);
  if ((st = check_n(op, n)) || (st = check_list(op, "tensors", ts, n, &ref)) ||
      (st = check_small(op, "norm", norm, MS_F32, 1, &ref, 0)))
    return st;
  MT_CALL(MS_OP_MT_CLIP, mt_clip, ts, n, norm, max_norm);
}

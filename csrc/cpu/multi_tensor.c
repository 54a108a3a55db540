/* multi_tensor.c: CPU kernels for the multi-tensor steps (unscale, scale update, SGD, AdamW,
 * global norm), split into 64K-element chunks over all tensors and run in parallel. */
#include <math.h>
#include <stdlib.h>

#include "../core/dtype.h"
#include "half_loop.h"
#include "multi_tensor.h"

#define CHUNK 65536

/* One piece of work: elements [start, start + len) of tensor t. */
typedef struct {
  int t;
  int64_t start, len;
} chunk;

static int chunks_of(ms_tensor *const *ts, int n, chunk **out, int64_t *count) {
  int64_t c = 0;
  for (int i = 0; i < n; i++)
    c += (ms_numel(ts[i]) + CHUNK - 1) / CHUNK;
  chunk *cs = malloc(sizeof *cs * (size_t)(c ? c : 1));
  if (!cs)
    return ms_fail(MS_ERR_OOM, "multi-tensor step: out of host memory for %lld chunks",
                   (long long)c);
  int64_t k = 0;
  for (int i = 0; i < n; i++)
    for (int64_t s = 0, ne = ms_numel(ts[i]); s < ne; s += CHUNK)
      cs[k++] = (chunk){i, s, ne - s < CHUNK ? ne - s : CHUNK};
  *out = cs;
  *count = c;
  return MS_OK;
}

static inline float ld(const ms_tensor *t, int64_t i) {
  const char *p = ms_data(t);
  switch (t->dtype) {
  case MS_F32: return ((const float *)p)[i];
  case MS_F16: return ms_f16_to_f32(((const uint16_t *)p)[i]);
  case MS_BF16: return ms_bf16_to_f32(((const uint16_t *)p)[i]);
  case MS_F64: return (float)((const double *)p)[i];
  default: return 0;
  }
}

static inline void st(ms_tensor *t, int64_t i, float v) {
  char *p = ms_data(t);
  switch (t->dtype) {
  case MS_F32: ((float *)p)[i] = v; break;
  case MS_F16: ((uint16_t *)p)[i] = ms_f32_to_f16(v); break;
  case MS_BF16: ((uint16_t *)p)[i] = ms_f32_to_bf16(v); break;
  case MS_F64: ((double *)p)[i] = v; break;
  default: break;
  }
}

/* f64 tensors (gradient checks) compute in double, everything else in float. */
static inline double ldd(const ms_tensor *t, int64_t i) {
  return t->dtype == MS_F64 ? ((const double *)ms_data(t))[i] : (double)ld(t, i);
}
static inline void std_(ms_tensor *t, int64_t i, double v) {
  if (t->dtype == MS_F64)
    ((double *)ms_data(t))[i] = v;
  else
    st(t, i, (float)v);
}

static float scalar(const ms_tensor *t) { return ((const float *)ms_data(t))[0]; }

int ms_cpu_mt_unscale(ms_context *ctx, ms_tensor *const *grads, int n, const ms_tensor *scale,
                      ms_tensor *found_inf) {
  chunk *cs;
  int64_t nc;
  int s = chunks_of(grads, n, &cs, &nc);
  if (s) return s;
  const float inv = (float)(1.0 / (double)scalar(scale));
  int bad = 0;
#pragma omp parallel for num_threads(ms_threads(ctx)) reduction(| : bad) schedule(static)
  for (int64_t c = 0; c < nc; c++) {
    ms_tensor *g = grads[cs[c].t];
    int b = 0;
    if (g->dtype == MS_F32 || ms_is_half(g->dtype)) {
      /* typed fast path: blocks loaded to float, scaled, stored back (vectorises) */
      float buf[MS_HALF_CHUNK];
      const int64_t es = ms_dtype_size(g->dtype);
      char *base = ms_data(g);
      for (int64_t i = cs[c].start, e = cs[c].start + cs[c].len; i < e; i += MS_HALF_CHUNK) {
        int64_t m = e - i < MS_HALF_CHUNK ? e - i : MS_HALF_CHUNK;
        ms_load_f32s(buf, base + i * es, es, g->dtype, m);
        for (int64_t k = 0; k < m; k++) {
          b |= !isfinite(buf[k]);
          buf[k] *= inv;
        }
        ms_store_f32s(base + i * es, es, g->dtype, buf, m);
      }
    } else if (g->dtype == MS_F64)
      for (int64_t i = cs[c].start, e = cs[c].start + cs[c].len; i < e; i++) {
        double v = ldd(g, i);
        b |= !isfinite(v);
        std_(g, i, v * (1.0 / (double)scalar(scale)));
      }
    else
      for (int64_t i = cs[c].start, e = cs[c].start + cs[c].len; i < e; i++) {
        float v = ld(g, i);
        b |= !isfinite(v);
        st(g, i, v * inv);
      }
    bad |= b;
  }
  free(cs);
  if (bad) ((float *)ms_data(found_inf))[0] = 1.0f;
  return MS_OK;
}

int ms_cpu_mt_scale_update(ms_context *ctx, ms_tensor *scale, ms_tensor *counters,
                           const ms_tensor *found_inf, const ms_scaler_params *p) {
  (void)ctx;
  float *s = (float *)ms_data(scale);
  int64_t *c = (int64_t *)ms_data(counters);
  double v = s[0];
  if (scalar(found_inf) != 0) {
    c[0] = 0;
    c[1]++;
    if (p->dynamic) v *= p->backoff_factor;
  } else if (++c[0] >= p->growth_interval && p->dynamic) {
    c[0] = 0;
    double g = v * p->growth_factor;
    if (g <= p->max_scale) v = g; /* at the ceiling: stays */
  }
  if (p->dynamic && !(v >= p->min_scale)) v = p->min_scale; /* also catches nan */
  s[0] = (float)v;
  return MS_OK;
}

static int skipped(const ms_tensor *found_inf) { return found_inf && scalar(found_inf) != 0; }

/* A tensor the typed fast paths read or write through ms_load_f32s / ms_store_f32s. */
static int typed_ok(const ms_tensor *t) { return t->dtype == MS_F32 || ms_is_half(t->dtype); }

int ms_cpu_mt_sgd(ms_context *ctx, ms_tensor *const *params, ms_tensor *const *grads,
                  ms_tensor *const *bufs, ms_tensor *const *master, int n, const ms_sgd_params *p,
                  const ms_tensor *found_inf) {
  if (skipped(found_inf)) return MS_OK;
  chunk *cs;
  int64_t nc;
  int s = chunks_of(params, n, &cs, &nc);
  if (s) return s;
  const int use_mu = p->momentum != 0, use_wd = p->weight_decay != 0;
#define SGD_LOOP(R)                                                                                \
  {                                                                                                \
    const R lr = (R)p->lr, mu = (R)p->momentum, wd = (R)p->weight_decay;                           \
    for (int64_t i = cs[c].start, e = cs[c].start + cs[c].len; i < e; i++) {                       \
      R wi = (R)ldd(w, i), gi = (R)ldd(g, i);                                                      \
      if (use_wd) gi = gi + wi * wd;                                                               \
      if (use_mu) {                                                                                \
        gi = (R)ldd(v, i) * mu + gi;                                                               \
        std_(v, i, gi);                                                                            \
      }                                                                                            \
      wi = wi + -lr * gi;                                                                          \
      std_(w, i, wi);                                                                              \
      if (master) std_(params[t], i, wi);                                                          \
    }                                                                                              \
  }
#pragma omp parallel for num_threads(ms_threads(ctx)) schedule(static)
  for (int64_t c = 0; c < nc; c++) {
    int t = cs[c].t;
    ms_tensor *w = master ? master[t] : params[t], *g = grads[t], *v = use_mu ? bufs[t] : NULL;
    if (!master && w->dtype == MS_F32 && g->dtype == MS_F32 && (!v || v->dtype == MS_F32)) {
      /* all-f32 fast path: plain pointers, so the loop vectorises (same arithmetic) */
      float *wp = (float *)ms_data(w), *vp = v ? (float *)ms_data(v) : NULL;
      const float *gp = (const float *)ms_data(g);
      const float lr = (float)p->lr, mu = (float)p->momentum, wd = (float)p->weight_decay;
      for (int64_t i = cs[c].start, e = cs[c].start + cs[c].len; i < e; i++) {
        float wi = wp[i], gi = gp[i];
        if (use_wd) gi = gi + wi * wd;
        if (use_mu) {
          gi = vp[i] * mu + gi;
          vp[i] = gi;
        }
        wp[i] = wi + -lr * gi;
      }
    } else if (w->dtype == MS_F32 && (!v || v->dtype == MS_F32) && typed_ok(g) &&
               (!master || typed_ok(params[t]))) {
      /* f32 weights (or O2's f32 masters) and state with f32/f16/bf16 gradients and half model
       * copies: blocks of the gradient loaded to float, the same arithmetic on plain pointers, the
       * new weights stored to the model's copy */
      float gb[MS_HALF_CHUNK], pb[MS_HALF_CHUNK];
      float *wp = (float *)ms_data(w), *vp = v ? (float *)ms_data(v) : NULL;
      const float lr = (float)p->lr, mu = (float)p->momentum, wd = (float)p->weight_decay;
      const int64_t ges = ms_dtype_size(g->dtype),
                    pes = master ? ms_dtype_size(params[t]->dtype) : 0;
      for (int64_t i0 = cs[c].start, e = cs[c].start + cs[c].len; i0 < e; i0 += MS_HALF_CHUNK) {
        int64_t m = e - i0 < MS_HALF_CHUNK ? e - i0 : MS_HALF_CHUNK;
        ms_load_f32s(gb, (const char *)ms_data(g) + i0 * ges, ges, g->dtype, m);
        float *wq = wp + i0, *vq = vp ? vp + i0 : NULL;
        for (int64_t k = 0; k < m; k++) {
          float wi = wq[k], gi = gb[k];
          if (use_wd) gi = gi + wi * wd;
          if (use_mu) {
            gi = vq[k] * mu + gi;
            vq[k] = gi;
          }
          wi = wi + -lr * gi;
          wq[k] = wi;
          pb[k] = wi;
        }
        if (master)
          ms_store_f32s((char *)ms_data(params[t]) + i0 * pes, pes, params[t]->dtype, pb, m);
      }
    } else if (w->dtype == MS_F64)
      SGD_LOOP(double)
    else
      SGD_LOOP(float)
  }
#undef SGD_LOOP
  free(cs);
  return MS_OK;
}

int ms_cpu_mt_adamw(ms_context *ctx, ms_tensor *const *params, ms_tensor *const *grads,
                    ms_tensor *const *m, ms_tensor *const *v, ms_tensor *const *master, int n,
                    const ms_adamw_params *p, ms_tensor *step, const ms_tensor *found_inf) {
  if (skipped(found_inf)) return MS_OK;
  int64_t *t_ = (int64_t *)ms_data(step);
  int64_t t = t_[0] + 1;
  chunk *cs;
  int64_t nc;
  int s = chunks_of(params, n, &cs, &nc);
  if (s) return s;
  const double bc1 = 1 - pow(p->beta1, (double)t), bc2 = 1 - pow(p->beta2, (double)t);
#define ADAMW_LOOP(R)                                                                              \
  {                                                                                                \
    const R decay = (R)(1 - p->lr * p->weight_decay), b1 = (R)p->beta1, b2 = (R)p->beta2,          \
            a1 = (R)(1 - p->beta1), a2 = (R)(1 - p->beta2), ibc2 = (R)(1 / bc2), eps = (R)p->eps,  \
            step_size = (R)(-p->lr / bc1);                                                         \
    for (int64_t i = cs[c].start, e = cs[c].start + cs[c].len; i < e; i++) {                       \
      R gi = (R)ldd(g, i), wi = (R)ldd(w, i) * decay;                                              \
      R mi = (R)ldd(mk, i) * b1 + a1 * gi;                                                         \
      R vi = (R)ldd(vk, i) * b2 + a2 * (gi * gi);                                                  \
      std_(mk, i, mi);                                                                             \
      std_(vk, i, vi);                                                                             \
      wi = wi + step_size * (mi / ((R)sqrt(vi * ibc2) + eps));                                     \
      std_(w, i, wi);                                                                              \
      if (master) std_(params[k], i, wi);                                                          \
    }                                                                                              \
  }
#pragma omp parallel for num_threads(ms_threads(ctx)) schedule(static)
  for (int64_t c = 0; c < nc; c++) {
    int k = cs[c].t;
    ms_tensor *w = master ? master[k] : params[k], *g = grads[k], *mk = m[k], *vk = v[k];
    if (w->dtype == MS_F32 && mk->dtype == MS_F32 && vk->dtype == MS_F32 && typed_ok(g) &&
        (!master || typed_ok(params[k]))) {
      /* typed fast path (as SGD's): f32 weights/masters and moments on plain pointers, the
       * gradient loaded in blocks, the model's half copy stored from the new weights */
      float gb[MS_HALF_CHUNK], pb[MS_HALF_CHUNK];
      float *wp = (float *)ms_data(w), *mp = (float *)ms_data(mk), *vp = (float *)ms_data(vk);
      const float decay = (float)(1 - p->lr * p->weight_decay), b1 = (float)p->beta1,
                  b2 = (float)p->beta2, a1 = (float)(1 - p->beta1), a2 = (float)(1 - p->beta2),
                  ibc2 = (float)(1 / bc2), eps = (float)p->eps, step_size = (float)(-p->lr / bc1);
      const int64_t ges = ms_dtype_size(g->dtype),
                    pes = master ? ms_dtype_size(params[k]->dtype) : 0;
      for (int64_t i0 = cs[c].start, e = cs[c].start + cs[c].len; i0 < e; i0 += MS_HALF_CHUNK) {
        int64_t len = e - i0 < MS_HALF_CHUNK ? e - i0 : MS_HALF_CHUNK;
        ms_load_f32s(gb, (const char *)ms_data(g) + i0 * ges, ges, g->dtype, len);
        float *wq = wp + i0, *mq = mp + i0, *vq = vp + i0;
        for (int64_t j = 0; j < len; j++) {
          float gi = gb[j], wi = wq[j] * decay;
          float mi = mq[j] * b1 + a1 * gi;
          float vi = vq[j] * b2 + a2 * (gi * gi);
          mq[j] = mi;
          vq[j] = vi;
          wi = wi + step_size * (mi / (sqrtf(vi * ibc2) + eps));
          wq[j] = wi;
          pb[j] = wi;
        }
        if (master)
          ms_store_f32s((char *)ms_data(params[k]) + i0 * pes, pes, params[k]->dtype, pb, len);
      }
    } else if (w->dtype == MS_F64)
      ADAMW_LOOP(double)
    else
      ADAMW_LOOP(float)
  }
#undef ADAMW_LOOP
  free(cs);
  t_[0] = t;
  return MS_OK;
}

int ms_cpu_mt_norm(ms_context *ctx, ms_tensor *const *ts, int n, ms_tensor *out) {
  chunk *cs;
  int64_t nc;
  int s = chunks_of(ts, n, &cs, &nc);
  if (s) return s;
  double *part = malloc(sizeof *part * (size_t)(nc ? nc : 1));
  if (!part) {
    free(cs);
    return ms_fail(MS_ERR_OOM, "mt_norm: out of host memory");
  }
#pragma omp parallel for num_threads(ms_threads(ctx)) schedule(static)
  for (int64_t c = 0; c < nc; c++) {
    const ms_tensor *x = ts[cs[c].t];
    double acc = 0;
    for (int64_t i = cs[c].start, e = cs[c].start + cs[c].len; i < e; i++) {
      double v = ldd(x, i);
      acc += v * v;
    }
    part[c] = acc;
  }
  double total = 0; /* summed in chunk order: the same result for any thread count */
  for (int64_t c = 0; c < nc; c++)
    total += part[c];
  free(part);
  free(cs);
  ((float *)ms_data(out))[0] = (float)sqrt(total);
  return MS_OK;
}

int ms_cpu_mt_clip(ms_context *ctx, ms_tensor *const *ts, int n, const ms_tensor *norm,
                   double max_norm) {
  double total = scalar(norm);
  if (!(total > max_norm)) return MS_OK;
  const float f = (float)(max_norm / (total + 1e-6));
  chunk *cs;
  int64_t nc;
  int s = chunks_of(ts, n, &cs, &nc);
  if (s) return s;
#pragma omp parallel for num_threads(ms_threads(ctx)) schedule(static)
  for (int64_t c = 0; c < nc; c++) {
    ms_tensor *x = ts[cs[c].t];
    for (int64_t i = cs[c].start, e = cs[c].start + cs[c].len; i < e; i++)
      std_(x, i, x->dtype == MS_F64 ? ldd(x, i) * (max_norm / (total + 1e-6)) : ld(x, i) * f);
  }
  free(cs);
  return MS_OK;
}

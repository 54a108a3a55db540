/* random.c: CPU uniform, normal, randint and dropout from the Philox stream. */
#include <math.h>

#include "../core/dtype.h"
#include "../core/philox.h"
#include "basic_kernels.h"

/* Element i of a draw uses word i % 4 of block (offset + i / 4): the layout the
 * CUDA kernels use too, so both devices give the same numbers. */
static uint32_t word_at(const ms_generator *g, int64_t i) {
  uint32_t w[4];
  ms_philox_block(g->seed, g->offset + (uint64_t)(i >> 2), 0, w);
  return w[i & 3];
}

/* Runs fn over contiguous t, or over a contiguous temporary then copies back. */
typedef void (*gen_fn)(ms_context *ctx, const ms_generator *g, char *p, ms_dtype d, int64_t n,
                       const double *args);

static int generate(ms_context *ctx, ms_generator *g, ms_tensor *t, gen_fn fn, const double *args,
                    uint64_t blocks) {
  int64_t n = ms_numel(t);
  ms_tensor *tmp = t;
  if (!ms_is_contiguous(t)) {
    int st = ms_tensor_new_like(t, t->dtype, &tmp);
    if (st) return st;
  }
  fn(ctx, g, ms_data(tmp), tmp->dtype, n, args);
  if (tmp != t) {
    ms_cpu_copy(ctx, t, tmp);
    ms_tensor_free(tmp);
  }
  g->offset += blocks;
  return MS_OK;
}

static void gen_uniform(ms_context *ctx, const ms_generator *g, char *p, ms_dtype d, int64_t n,
                        const double *a) {
  int64_t es = ms_dtype_size(d);
#pragma omp parallel for num_threads(ms_threads(ctx)) if (n > MS_GRAIN)
  for (int64_t b = 0; b < (n + 3) / 4; b++) {
    uint32_t w[4];
    ms_philox_block(g->seed, g->offset + (uint64_t)b, 0, w);
    for (int j = 0; j < 4 && b * 4 + j < n; j++) {
      double u = ms_u32_to_unit(w[j]);
      ms_store_f64(p + (b * 4 + j) * es, d, a[0] + (a[1] - a[0]) * u);
    }
  }
}

/* Box-Muller: element i uses words 2*(i%2) and 2*(i%2)+1 of block offset + i/2. */
static void gen_normal(ms_context *ctx, const ms_generator *g, char *p, ms_dtype d, int64_t n,
                       const double *a) {
  int64_t es = ms_dtype_size(d);
#pragma omp parallel for num_threads(ms_threads(ctx)) if (n > MS_GRAIN)
  for (int64_t b = 0; b < (n + 1) / 2; b++) {
    uint32_t w[4];
    ms_philox_block(g->seed, g->offset + (uint64_t)b, 0, w);
    for (int j = 0; j < 2 && b * 2 + j < n; j++) {
      double u1 = ((double)w[2 * j] + 1.0) * (1.0 / 4294967296.0); /* (0, 1] */
      double u2 = (double)w[2 * j + 1] * (1.0 / 4294967296.0);
      double z = sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
      ms_store_f64(p + (b * 2 + j) * es, d, a[0] + a[1] * z);
    }
  }
}

static void gen_randint(ms_context *ctx, const ms_generator *g, char *p, ms_dtype d, int64_t n,
                        const double *a) {
  int64_t es = ms_dtype_size(d);
  int64_t low = (int64_t)a[0];
  uint64_t range = (uint64_t)((int64_t)a[1] - low);
#pragma omp parallel for num_threads(ms_threads(ctx)) if (n > MS_GRAIN)
  for (int64_t b = 0; b < (n + 1) / 2; b++) {
    uint32_t w[4];
    ms_philox_block(g->seed, g->offset + (uint64_t)b, 0, w);
    for (int j = 0; j < 2 && b * 2 + j < n; j++) {
      uint64_t r = ((uint64_t)w[2 * j + 1] << 32) | w[2 * j];
      int64_t v = low + (int64_t)(r % range);
      char *q = p + (b * 2 + j) * es;
      if (d == MS_I64)
        *(int64_t *)q = v;
      else
        ms_store_f64(q, d, (double)v);
    }
  }
}

int ms_cpu_uniform(ms_context *ctx, ms_generator *g, ms_tensor *t, double low, double high) {
  double a[2] = {low, high};
  return generate(ctx, g, t, gen_uniform, a, (uint64_t)(ms_numel(t) + 3) / 4);
}

int ms_cpu_normal(ms_context *ctx, ms_generator *g, ms_tensor *t, double mean, double std) {
  double a[2] = {mean, std};
  return generate(ctx, g, t, gen_normal, a, (uint64_t)(ms_numel(t) + 1) / 2);
}

int ms_cpu_randint(ms_context *ctx, ms_generator *g, ms_tensor *t, int64_t low, int64_t high) {
  double a[2] = {(double)low, (double)high};
  return generate(ctx, g, t, gen_randint, a, (uint64_t)(ms_numel(t) + 1) / 2);
}

/* x is contiguous (the op layer ensures it); mask holds 0 or 1/(1-p). */
int ms_cpu_dropout(ms_context *ctx, ms_generator *g, const ms_tensor *x, double p, ms_tensor *out,
                   ms_tensor *mask) {
  int64_t n = ms_numel(mask), es = ms_dtype_size(mask->dtype);
  char *m = ms_data(mask), *o = ms_data(out);
  const char *xp = ms_data(x);
  double keep = 1.0 / (1.0 - p);
#pragma omp parallel for num_threads(ms_threads(ctx)) if (n > MS_GRAIN)
  for (int64_t i = 0; i < n; i++) {
    double mv = ms_u32_to_unit(word_at(g, i)) >= p ? keep : 0.0;
    ms_store_f64(m + i * es, mask->dtype, mv);
    ms_store_f64(o + i * es, out->dtype, ms_load_f64(xp + i * es, x->dtype) * mv);
  }
  g->offset += (uint64_t)(n + 3) / 4;
  return MS_OK;
}

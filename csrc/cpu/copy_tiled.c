/* copy_tiled.c: same-dtype copies whose destination and source run contiguously along different
 * dims (a transpose or permute made contiguous). The element-wise loop walks the destination's
 * rows and reads the source a cache line per element (12.5 ns an element for a [2, 16384, 128]
 * transpose, 25x a plain copy); in 32 x 32 tiles both sides move in whole lines. */
#include "basic_kernels.h"
#include "transpose_simd.h"

#define TILE 32

typedef struct {
  int nd; /* dims other than i and j */
  int64_t shape[MS_MAX_DIMS], ds[MS_MAX_DIMS], ss[MS_MAX_DIMS];
  int64_t ni, nj, dsi, ssj; /* i: the source's unit-stride dim; j: the destination's */
} tiled_plan;

/* Offsets (elements) of outer position k in the destination and the source. */
static void outer_offsets(const tiled_plan *p, int64_t k, int64_t *dof, int64_t *sof) {
  int64_t d = 0, s = 0;
  for (int a = p->nd - 1; a >= 0; a--) {
    int64_t c = k % p->shape[a];
    k /= p->shape[a];
    d += c * p->ds[a], s += c * p->ss[a];
  }
  *dof = d, *sof = s;
}

/* Tile rows [ib, ie) x columns [jb, je) of outer position k; B x B blocks go through the
 * in-register transpose where the build has one, the rest element by element. */
#define TILE_LOOP(T, B, BLOCK)                                                                     \
  static void tiles_##T(const tiled_plan *p, char *dst, const char *src, int64_t k, int64_t ib) {  \
    int64_t dof, sof;                                                                              \
    outer_offsets(p, k, &dof, &sof);                                                               \
    T *o = (T *)dst + dof;                                                                         \
    const T *in = (const T *)src + sof;                                                            \
    int64_t ie = ib + TILE < p->ni ? ib + TILE : p->ni;                                            \
    for (int64_t jb = 0; jb < p->nj; jb += TILE) {                                                 \
      int64_t je = jb + TILE < p->nj ? jb + TILE : p->nj, i = ib;                                  \
      if (B > 1 && MS_HAVE_TRANSPOSE_SIMD)                                                         \
        for (; i + B <= ie; i += B) {                                                              \
          int64_t j = jb;                                                                          \
          for (; j + B <= je; j += B)                                                              \
            BLOCK(o + i * p->dsi + j, p->dsi, in + i + j * p->ssj, p->ssj);                        \
          for (int64_t r = i; r < i + B; r++)                                                      \
            for (int64_t c = j; c < je; c++)                                                       \
              o[r * p->dsi + c] = in[r + c * p->ssj];                                              \
        }                                                                                          \
      for (; i < ie; i++)                                                                          \
        for (int64_t j = jb; j < je; j++)                                                          \
          o[i * p->dsi + j] = in[i + j * p->ssj];                                                  \
    }                                                                                              \
  }
#define NO_BLOCK(d, ds, s, ss) ((void)0)
#if MS_HAVE_TRANSPOSE_SIMD
TILE_LOOP(uint16_t, 16, ms_tr16x16_u16)
TILE_LOOP(uint32_t, 8, ms_tr8x8_u32)
#else
TILE_LOOP(uint16_t, 1, NO_BLOCK)
TILE_LOOP(uint32_t, 1, NO_BLOCK)
#endif
TILE_LOOP(uint64_t, 1, NO_BLOCK)

int ms_cpu_copy_tiled(ms_context *ctx, ms_tensor *dst, const ms_tensor *src) {
  int n = dst->ndim, es = (int)ms_dtype_size(dst->dtype);
  if (src->dtype != dst->dtype || src->ndim != n || n < 2 || (es != 2 && es != 4 && es != 8))
    return 0;
  int j = n - 1, i = -1;
  if (dst->strides[j] != 1 || src->strides[j] == 1 || dst->shape[j] < TILE / 2) return 0;
  for (int a = 0; a < j; a++)
    if (src->strides[a] == 1 && src->shape[a] >= TILE / 2) i = a;
  if (i < 0) return 0;
  tiled_plan p = {0};
  for (int a = 0; a < n; a++) {
    if (src->strides[a] < 0 || dst->strides[a] < 0) return 0;
    if (a == i || a == j) continue;
    p.shape[p.nd] = dst->shape[a], p.ds[p.nd] = dst->strides[a], p.ss[p.nd] = src->strides[a];
    p.nd++;
  }
  p.ni = dst->shape[i], p.nj = dst->shape[j], p.dsi = dst->strides[i], p.ssj = src->strides[j];
  int64_t outer = 1;
  for (int a = 0; a < p.nd; a++)
    outer *= p.shape[a];
  int64_t iblocks = (p.ni + TILE - 1) / TILE, tasks = outer * iblocks;
  char *o = ms_data(dst);
  const char *in = ms_data(src);
  int par = outer * p.ni * p.nj > MS_GRAIN;
#pragma omp parallel for num_threads(ms_threads(ctx)) if (par) schedule(static)
  for (int64_t t = 0; t < tasks; t++) {
    int64_t k = t / iblocks, ib = (t % iblocks) * TILE;
    if (es == 2)
      tiles_uint16_t(&p, o, in, k, ib);
    else if (es == 4)
      tiles_uint32_t(&p, o, in, k, ib);
    else
      tiles_uint64_t(&p, o, in, k, ib);
  }
  return 1;
}

ms_tensor *ms_cpu_stage_transposed(ms_context *ctx, const ms_tensor *x) {
  if (!x || ms_is_contiguous(x) || ms_numel(x) < TILE * TILE) return NULL;
  for (int a = 0; a < x->ndim; a++) /* broadcast: read from cache as it is, not materialised */
    if (x->shape[a] > 1 && x->strides[a] == 0) return NULL;
  ms_tensor *t = NULL;
  if (ms_tensor_new(x->shape, x->ndim, x->dtype, MS_CPU, 0, &t)) {
    ms_clear_error(); /* no memory for the staging copy: the caller's strided loop still works */
    return NULL;
  }
  if (ms_cpu_copy_tiled(ctx, t, x)) return t;
  ms_tensor_free(t);
  return NULL;
}

/* conv_dnnl.c: f32 and bf16 conv2d forward / backward-data / backward-weights through oneDNN
 * (bf16: the native avx512_core_bf16 kernels, f32 accumulation), with the primitives, their
 * reorders and memory objects cached per shape and dtype in the context. */
#include <dnnl.h>
#include <stdlib.h>

#include "conv_cpu.h"
#include "dnnl_ctx.h"
#include "reorder16.h"

enum { KIND_FWD = 1, KIND_BWD_DATA = 2, KIND_BWD_W = 3 };
/* Workspace slots: one per tensor kind, so a blocked diff_dst made for backward-data is still
 * there for backward-weights. */
enum { SLOT_SRC = 0, SLOT_WEI = 1, SLOT_DST = 2, SLOT_SCRATCH = 3 };
/* Memory formats the primitive sees: blocked (format_tag_any + reorders) or the plain user ones. */
enum { FMT_ANY = 0, FMT_PLAIN = 1 };
enum { OWN_ACT = 1, OWN_DW = 2 };

/* MS_CONV_REORDER=dnnl keeps oneDNN's reorders everywhere (for comparisons). */
static int own_reorders(void) {
  static int v = -1;
  if (v < 0) {
    const char *e = getenv("MS_CONV_REORDER");
    v = !(e && !strcmp(e, "dnnl"));
  }
  return v;
}

/* One oneDNN convolution primitive with its three tensors: two inputs, one output. */
typedef struct conv_plan {
  dnnl_primitive_t prim;
  dnnl_primitive_t reorder[3]; /* user -> inner for inputs, inner -> user for the output */
  dnnl_memory_t user[3], inner[3];
  dnnl_memory_desc_t inner_md[3];
  size_t inner_bytes[3];
  /* Reorders of reorder16.c instead of oneDNN 2.6's. OWN_ACT: a bf16 activation between NCHW and
   * nChw16c (alone, 1 thread: 4x32x256x256 2.5 vs 5.7-7.6 ms, 4x64x128x128 0.8 vs 3.1 ms); dims16:
   * its n, c, h*w. OWN_DW: backward-weights' f32 gradient from ABcd16b16a to OIHW; dims16: o, i,
   * kh*kw. PP-LiteSeg's bf16 step, 1 thread, min of 3: 4x512x512 1.06 vs 1.13 s CPU with both
   * (MS_CONV_REORDER=dnnl), 2x256x256 0.161 vs 0.160 s (no difference). */
  int own[3];
  int64_t dims16[3][3];
  int arg[3], slot[3];
  dnnl_memory_t bias;
  int bias_arg;
  dnnl_memory_t scratch;
  size_t scratch_bytes;
} conv_plan;

static void plan_free(void *p) {
  conv_plan *pl = p;
  if (!pl) return;
  if (pl->prim) dnnl_primitive_destroy(pl->prim);
  for (int i = 0; i < 3; i++) {
    if (pl->reorder[i]) dnnl_primitive_destroy(pl->reorder[i]);
    if (pl->user[i]) dnnl_memory_destroy(pl->user[i]);
    if (pl->inner[i]) dnnl_memory_destroy(pl->inner[i]);
  }
  if (pl->bias) dnnl_memory_destroy(pl->bias);
  if (pl->scratch) dnnl_memory_destroy(pl->scratch);
  free(pl);
}

static int fmt_mode(const ms_conv_geom *g, int kind) {
  static int forced = -1;
  if (forced == -1) {
    const char *e = getenv("MS_CONV_FORMAT");
    forced = e && !strcmp(e, "plain") ? FMT_PLAIN : e && !strcmp(e, "any") ? FMT_ANY : -2;
  }
  if (forced >= 0) return forced;
  /* Pointwise convs are GEMMs on NCHW: forward and backward-data ran 20-35% faster on the plain
   * layouts (no reorders) here; backward-weights is faster blocked. */
  int pointwise =
      g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 && g->pw == 0 && g->g == 1;
  if (pointwise && kind != KIND_BWD_W) return FMT_PLAIN;
  return FMT_ANY;
}

/* Batch invariance runs Winograd one sample at a time from this many input pixels per sample,
 * direct below: oneDNN transforms the weights on every call, which one sample of 8x8 (4 tiles)
 * does not amortise, while from 16x16 a sample's Winograd still beat direct at 1 thread (512x512
 * PP-LiteSeg layers, batch 4: 64x64 256->64 forward 21 ms per sample vs 217 direct, 16x16
 * 1024->128 55 vs 117; batched Winograd 93 and 54). */
#define BINV_WINO_MIN_HW 256

/* Algorithm: 0 direct, 1 winograd (3x3 stride 1 only; falls back to direct when unavailable).
 * binv: the context's batch invariance (ms_context_set_batch_invariant). */
static int algo_choice(const ms_conv_geom *g, dnnl_data_type_t dt, int kind, int binv) {
  static int forced = -1;
  if (forced == -1) {
    const char *e = getenv("MS_CONV_ALGO");
    forced = e && !strcmp(e, "direct") ? 0 : e && !strcmp(e, "winograd") ? 1 : -2;
  }
  int eligible = dt == dnnl_f32 && g->kh == 3 && g->kw == 3 && g->sh == 1 && g->sw == 1 &&
                 g->dh == 1 && g->dw == 1 && g->g == 1 && g->c % 16 == 0 && g->o % 16 == 0;
  if (!eligible) return 0;
  if (forced >= 0) return forced;
  /* Batch invariance: oneDNN's Winograd picks its schedule from the whole geometry, minibatch
   * included, and a sample's forward result changes with it (rel. 1.4e-6 between batch 4 and
   * batch 1 at 256 channels 8x8, at 1 or 2 threads; direct, or Winograd planned for one sample:
   * bit-identical). Data parallel 2 x 2 vs 1 x 4 on PP-LiteSeg (crop 64, 3 iterations) differed
   * by 3.3e-5 with batched Winograd forward and backward-data, 4.6e-7 with Winograd for
   * backward-weights only: a reduction over the batch, whose order differs between such runs
   * anyway. So forward and backward-data run direct on small inputs and Winograd per sample on
   * larger ones (per_sample below): either choice depends on one sample's geometry only. */
  if (binv && kind != KIND_BWD_W && g->h * g->w < BINV_WINO_MIN_HW) return 0;
  /* oneDNN's avx512 f32 Winograd F(4x4, 3x3) ran fwd, bwd-data and bwd-weights 2-2.5x faster
   * than direct on PP-LiteSeg's 3x3 layers on this machine (tests/bench); results agree with
   * f64 to ~1e-5 relative. */
  return 1;
}

static void make_key(int64_t *key, int kind, const ms_conv_geom *g, int has_bias, int mode,
                     dnnl_data_type_t dt, dnnl_data_type_t wdt, int binv) {
  memset(key, 0, sizeof(int64_t) * MS_DNNL_KEY_LEN);
  int64_t v[] = {kind + 16 * (int64_t)mode + 64 * (int64_t)algo_choice(g, dt, kind, binv) +
                     256 * (int64_t)dt + 4096 * (int64_t)wdt,
                 g->n,
                 g->c,
                 g->h,
                 g->w,
                 g->o,
                 g->kh,
                 g->kw,
                 g->sh,
                 g->sw,
                 g->ph,
                 g->pw,
                 g->dh,
                 g->dw,
                 g->g,
                 has_bias,
                 g->oh,
                 g->ow};
  memcpy(key, v, sizeof v);
}

#define CK(call)                                                                                   \
  do {                                                                                             \
    dnnl_status_t s_ = (call);                                                                     \
    if (s_ != dnnl_success) {                                                                      \
      st = ms_dnnl_fail(s_, op, #call);                                                            \
      goto done;                                                                                   \
    }                                                                                              \
  } while (0)

static const char *kind_name(int kind) { return kind == KIND_FWD ? "conv2d" : "conv2d_backward"; }

/* Builds the plan for one kind of conv computation: activations of type dt, the caller's weights,
 * bias and their gradients of type wdt (dt, or f32 beside bf16: the weight reorders convert, and
 * backward-weights writes f32). */
static int plan_create(ms_dnnl *d, int kind, const ms_conv_geom *g, int has_bias, int mode,
                       dnnl_alg_kind_t alg, dnnl_data_type_t dt, dnnl_data_type_t wdt,
                       conv_plan **out) {
  const char *op = kind_name(kind);
  int st = MS_OK;
  dnnl_primitive_desc_t hint = NULL, pd = NULL, rpd = NULL;
  dnnl_primitive_attr_t attr = NULL;
  conv_plan *pl = calloc(1, sizeof *pl);
  if (!pl) return ms_fail(MS_ERR_OOM, "%s: out of host memory", op);

  dnnl_memory_desc_t u_src, u_wei, u_dst, a_src, a_wei, a_dwei, a_dst, bmd;
  dnnl_dims_t ds = {g->n, g->c, g->h, g->w}, dd = {g->n, g->o, g->oh, g->ow};
  dnnl_dims_t dw5 = {g->g, g->o / g->g, g->c / g->g, g->kh, g->kw};
  dnnl_dims_t dw4 = {g->o, g->c, g->kh, g->kw}, db = {g->o};
  int wnd = g->g > 1 ? 5 : 4;
  int64_t *wdims = g->g > 1 ? dw5 : dw4;
  dnnl_format_tag_t wtag = g->g > 1 ? dnnl_goihw : dnnl_oihw;
  CK(dnnl_memory_desc_init_by_tag(&u_src, 4, ds, dt, dnnl_nchw));
  CK(dnnl_memory_desc_init_by_tag(&u_dst, 4, dd, dt, dnnl_nchw));
  CK(dnnl_memory_desc_init_by_tag(&u_wei, wnd, wdims, wdt, wtag));
  CK(dnnl_memory_desc_init_by_tag(&bmd, 1, db, wdt, dnnl_a));
  if (mode == FMT_ANY) {
    CK(dnnl_memory_desc_init_by_tag(&a_src, 4, ds, dt, dnnl_format_tag_any));
    CK(dnnl_memory_desc_init_by_tag(&a_dst, 4, dd, dt, dnnl_format_tag_any));
    CK(dnnl_memory_desc_init_by_tag(&a_wei, wnd, wdims, dt, dnnl_format_tag_any));
    CK(dnnl_memory_desc_init_by_tag(&a_dwei, wnd, wdims, wdt, dnnl_format_tag_any));
  } else {
    a_src = u_src;
    a_dst = u_dst;
    CK(dnnl_memory_desc_init_by_tag(&a_wei, wnd, wdims, dt, wtag));
    a_dwei = u_wei;
  }
  dnnl_dims_t strides = {g->sh, g->sw}, dil = {g->dh - 1, g->dw - 1}, pl_ = {g->ph, g->pw};
  /* Right padding that makes oneDNN's output size formula land exactly on oh, ow. */
  dnnl_dims_t pr_ = {(g->oh - 1) * g->sh + (g->kh - 1) * g->dh + 1 - g->h - g->ph,
                     (g->ow - 1) * g->sw + (g->kw - 1) * g->dw + 1 - g->w - g->pw};
  CK(dnnl_primitive_attr_create(&attr));
  CK(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));

  dnnl_convolution_desc_t fd, cd;
  CK(dnnl_dilated_convolution_forward_desc_init(&fd, dnnl_forward_training, alg, &a_src, &a_wei,
                                                (kind == KIND_FWD && has_bias) ? &bmd : NULL,
                                                &a_dst, strides, dil, pl_, pr_));
  const dnnl_memory_desc_t *user_md[3];
  if (kind == KIND_FWD) {
    CK(dnnl_primitive_desc_create(&pd, &fd, attr, d->engine, NULL));
    pl->inner_md[0] = *dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    pl->inner_md[1] = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    pl->inner_md[2] = *dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    user_md[0] = &u_src, user_md[1] = &u_wei, user_md[2] = &u_dst;
    pl->arg[0] = DNNL_ARG_SRC, pl->arg[1] = DNNL_ARG_WEIGHTS, pl->arg[2] = DNNL_ARG_DST;
    pl->slot[0] = SLOT_SRC, pl->slot[1] = SLOT_WEI, pl->slot[2] = SLOT_DST;
    pl->bias_arg = DNNL_ARG_BIAS;
  } else {
    CK(dnnl_primitive_desc_create(&hint, &fd, NULL, d->engine, NULL));
    if (kind == KIND_BWD_DATA) {
      CK(dnnl_dilated_convolution_backward_data_desc_init(&cd, alg, &a_src, &a_wei, &a_dst, strides,
                                                          dil, pl_, pr_));
      CK(dnnl_primitive_desc_create(&pd, &cd, attr, d->engine, hint));
      pl->inner_md[0] = *dnnl_primitive_desc_query_md(pd, dnnl_query_diff_dst_md, 0);
      pl->inner_md[1] = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
      pl->inner_md[2] = *dnnl_primitive_desc_query_md(pd, dnnl_query_diff_src_md, 0);
      user_md[0] = &u_dst, user_md[1] = &u_wei, user_md[2] = &u_src;
      pl->arg[0] = DNNL_ARG_DIFF_DST, pl->arg[1] = DNNL_ARG_WEIGHTS, pl->arg[2] = DNNL_ARG_DIFF_SRC;
      pl->slot[0] = SLOT_DST, pl->slot[1] = SLOT_WEI, pl->slot[2] = SLOT_SRC;
    } else {
      CK(dnnl_dilated_convolution_backward_weights_desc_init(
          &cd, alg, &a_src, &a_dwei, has_bias ? &bmd : NULL, &a_dst, strides, dil, pl_, pr_));
      CK(dnnl_primitive_desc_create(&pd, &cd, attr, d->engine, hint));
      pl->inner_md[0] = *dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
      pl->inner_md[1] = *dnnl_primitive_desc_query_md(pd, dnnl_query_diff_dst_md, 0);
      pl->inner_md[2] = *dnnl_primitive_desc_query_md(pd, dnnl_query_diff_weights_md, 0);
      user_md[0] = &u_src, user_md[1] = &u_dst, user_md[2] = &u_wei;
      pl->arg[0] = DNNL_ARG_SRC, pl->arg[1] = DNNL_ARG_DIFF_DST, pl->arg[2] = DNNL_ARG_DIFF_WEIGHTS;
      pl->slot[0] = SLOT_SRC, pl->slot[1] = SLOT_DST, pl->slot[2] = SLOT_WEI;
      pl->bias_arg = DNNL_ARG_DIFF_BIAS;
    }
  }
  const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
  pl->scratch_bytes = smd ? dnnl_memory_desc_get_size(smd) : 0;
  if (pl->scratch_bytes) CK(dnnl_memory_create(&pl->scratch, smd, d->engine, DNNL_MEMORY_NONE));
  CK(dnnl_primitive_create(&pl->prim, pd));

  for (int i = 0; i < 3; i++) {
    CK(dnnl_memory_create(&pl->user[i], user_md[i], d->engine, DNNL_MEMORY_NONE));
    if (dnnl_memory_desc_equal(user_md[i], &pl->inner_md[i])) continue;
    pl->inner_bytes[i] = dnnl_memory_desc_get_size(&pl->inner_md[i]);
    CK(dnnl_memory_create(&pl->inner[i], &pl->inner_md[i], d->engine, DNNL_MEMORY_NONE));
    dnnl_memory_desc_t m16;
    const int64_t *ud = user_md[i]->dims;
    if (own_reorders() && dt == dnnl_bf16 && user_md[i]->ndims == 4 && user_md[i] != &u_wei &&
        dnnl_memory_desc_init_by_tag(&m16, 4, ud, dnnl_bf16, dnnl_nChw16c) == dnnl_success &&
        dnnl_memory_desc_equal(&m16, &pl->inner_md[i])) {
      pl->own[i] = OWN_ACT;
      pl->dims16[i][0] = ud[0], pl->dims16[i][1] = ud[1], pl->dims16[i][2] = ud[2] * ud[3];
      continue;
    }
    if (own_reorders() && kind == KIND_BWD_W && i == 2 && wdt == dnnl_f32 && dt == dnnl_bf16 &&
        wnd == 4 &&
        dnnl_memory_desc_init_by_tag(&m16, 4, ud, dnnl_f32, dnnl_ABcd16b16a) == dnnl_success &&
        dnnl_memory_desc_equal(&m16, &pl->inner_md[i])) {
      pl->own[i] = OWN_DW;
      pl->dims16[i][0] = ud[0], pl->dims16[i][1] = ud[1], pl->dims16[i][2] = ud[2] * ud[3];
      continue;
    }
    if (i < 2)
      CK(dnnl_reorder_primitive_desc_create(&rpd, user_md[i], d->engine, &pl->inner_md[i],
                                            d->engine, NULL));
    else
      CK(dnnl_reorder_primitive_desc_create(&rpd, &pl->inner_md[i], d->engine, user_md[i],
                                            d->engine, NULL));
    CK(dnnl_primitive_create(&pl->reorder[i], rpd));
    dnnl_primitive_desc_destroy(rpd);
    rpd = NULL;
  }
  if (has_bias && kind != KIND_BWD_DATA)
    CK(dnnl_memory_create(&pl->bias, &bmd, d->engine, DNNL_MEMORY_NONE));

done:
  if (rpd) dnnl_primitive_desc_destroy(rpd);
  if (pd) dnnl_primitive_desc_destroy(pd);
  if (hint) dnnl_primitive_desc_destroy(hint);
  if (attr) dnnl_primitive_attr_destroy(attr);
  if (st) {
    plan_free(pl);
    return st;
  }
  *out = pl;
  return MS_OK;
}

static int plan_get(ms_dnnl *d, int kind, const ms_conv_geom *g, int has_bias, int mode,
                    dnnl_data_type_t dt, dnnl_data_type_t wdt, int binv, conv_plan **out) {
  int64_t key[MS_DNNL_KEY_LEN];
  make_key(key, kind, g, has_bias, mode, dt, wdt, binv);
  conv_plan *pl = ms_dnnl_cache_find(d, key);
  if (!pl) {
    int wino = algo_choice(g, dt, kind, binv);
    int st = plan_create(d, kind, g, has_bias, mode,
                         wino ? dnnl_convolution_winograd : dnnl_convolution_direct, dt, wdt, &pl);
    if (st == MS_ERR_UNSUPPORTED && wino) { /* no Winograd kernel for this case: direct */
      ms_clear_error();
      st = plan_create(d, kind, g, has_bias, mode, dnnl_convolution_direct, dt, wdt, &pl);
    }
    if (st) return st;
    ms_dnnl_cache_put(d, key, pl, plan_free);
  }
  *out = pl;
  return MS_OK;
}

static int exec(dnnl_primitive_t p, ms_dnnl *d, int n, const dnnl_exec_arg_t *args,
                const char *op) {
  int st = MS_OK;
  CK(dnnl_primitive_execute(p, d->stream, n, args));
done:
  return st;
}

/* Runs pl on user buffers ptr[0..2] (+ bias) with nt threads. skip0/skip1: that input is already
 * in its slot in the inner format (left there by the previous plan). */
static int plan_run(ms_dnnl *d, int nt, conv_plan *pl, void *const ptr[3], void *bias, int skip0,
                    int skip1, const char *op) {
  int st = MS_OK;
  dnnl_exec_arg_t args[5];
  int na = 0;
  for (int i = 0; i < 3; i++) {
    dnnl_memory_t m = pl->user[i];
    CK(dnnl_memory_set_data_handle(pl->user[i], ptr[i]));
    if (pl->inner[i]) {
      void *buf = ms_dnnl_slot(d, pl->slot[i], pl->inner_bytes[i]);
      if (!buf) return ms_fail(MS_ERR_OOM, "%s: out of host memory for a reorder buffer", op);
      CK(dnnl_memory_set_data_handle(pl->inner[i], buf));
      m = pl->inner[i];
      int skip = (i == 0 && skip0) || (i == 1 && skip1);
      const int64_t *d16 = pl->dims16[i];
      if (i < 2 && !skip && pl->own[i] == OWN_ACT) {
        ms_nchw_to_nc16(nt, buf, ptr[i], d16[0], d16[1], d16[2]);
      } else if (i < 2 && !skip) {
        dnnl_exec_arg_t ra[2] = {{DNNL_ARG_FROM, pl->user[i]}, {DNNL_ARG_TO, pl->inner[i]}};
        if ((st = exec(pl->reorder[i], d, 2, ra, op))) return st;
      }
    }
    args[na++] = (dnnl_exec_arg_t){pl->arg[i], m};
  }
  if (pl->bias && bias) {
    CK(dnnl_memory_set_data_handle(pl->bias, bias));
    args[na++] = (dnnl_exec_arg_t){pl->bias_arg, pl->bias};
  }
  if (pl->scratch) {
    void *buf = ms_dnnl_slot(d, SLOT_SCRATCH, pl->scratch_bytes);
    if (!buf) return ms_fail(MS_ERR_OOM, "%s: out of host memory for the scratchpad", op);
    CK(dnnl_memory_set_data_handle(pl->scratch, buf));
    args[na++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, pl->scratch};
  }
  if ((st = exec(pl->prim, d, na, args, op))) return st;
  if (pl->inner[2] && pl->own[2]) {
    CK(dnnl_stream_wait(d->stream));
    void *buf = NULL;
    const int64_t *d16 = pl->dims16[2];
    CK(dnnl_memory_get_data_handle(pl->inner[2], &buf));
    if (pl->own[2] == OWN_ACT)
      ms_nc16_to_nchw(nt, ptr[2], buf, d16[0], d16[1], d16[2]);
    else
      ms_oi16i16o_to_oihw(nt, ptr[2], buf, d16[0], d16[1], d16[2]);
  } else if (pl->inner[2]) {
    dnnl_exec_arg_t ra[2] = {{DNNL_ARG_FROM, pl->inner[2]}, {DNNL_ARG_TO, pl->user[2]}};
    if ((st = exec(pl->reorder[2], d, 2, ra, op))) return st;
  }
  CK(dnnl_stream_wait(d->stream));
done:
  return st;
}

/* oneDNN's types for x's dtype (f32 or bf16) and w's (x's, or f32 beside bf16), or fails as
 * unsupported. */
static int dnnl_type(const ms_tensor *x, const ms_tensor *w, const char *op, dnnl_data_type_t *dt,
                     dnnl_data_type_t *wdt) {
  if ((x->dtype == MS_F32 || x->dtype == MS_BF16) && (w->dtype == x->dtype || w->dtype == MS_F32)) {
    *dt = x->dtype == MS_F32 ? dnnl_f32 : dnnl_bf16;
    *wdt = w->dtype == MS_F32 ? dnnl_f32 : dnnl_bf16;
    return MS_OK;
  }
  return ms_fail(MS_ERR_UNSUPPORTED, "%s: oneDNN path takes f32 or bf16, got x %s, w %s", op,
                 ms_desc(x), ms_desc(w));
}

/* bf16 runs the blocked layouts, where oneDNN has its avx512_core_bf16 kernels, except the
 * pointwise forward: on the plain layouts (no reorders) it ran 5-45% faster on PP-LiteSeg's 1x1
 * layers here (the largest gain at 64x64), while their backward-data ran 2-14% slower plain. */
static int fmt_for(const ms_conv_geom *g, int kind, dnnl_data_type_t dt) {
  if (dt == dnnl_bf16) return kind == KIND_FWD ? fmt_mode(g, kind) : FMT_ANY;
  return fmt_mode(g, kind);
}

/* Batch invariance: Winograd forward and backward-data run one sample at a time (a plan for
 * minibatch 1), so the schedule never depends on the batch. Returns the number of calls (1: one
 * batched call) and sets *g1 to the geometry to plan. */
static int64_t per_sample(const ms_context *ctx, const ms_conv_geom *g, dnnl_data_type_t dt,
                          int kind, ms_conv_geom *g1) {
  *g1 = *g;
  if (!ctx->batch_invariant || g->n <= 1 || !algo_choice(g, dt, kind, 1)) return 1;
  g1->n = 1;
  return g->n;
}

int ms_cpu_conv2d_fwd_dnnl(ms_context *ctx, const ms_conv_geom *g, const ms_tensor *x,
                           const ms_tensor *w, const ms_tensor *b, ms_tensor *y) {
  dnnl_data_type_t dt = dnnl_f32, wdt = dnnl_f32;
  int st = dnnl_type(x, w, "conv2d", &dt, &wdt);
  if (st) return st;
  ms_dnnl *d;
  conv_plan *pl;
  ms_conv_geom g1;
  int64_t calls = per_sample(ctx, g, dt, KIND_FWD, &g1), es = ms_dtype_size(x->dtype);
  st = ms_dnnl_get(ctx, &d);
  if (!st)
    st = plan_get(d, KIND_FWD, &g1, b != NULL, fmt_for(&g1, KIND_FWD, dt), dt, wdt,
                  ctx->batch_invariant, &pl);
  for (int64_t i = 0; i < calls && !st; i++) {
    void *ptr[3] = {(char *)ms_data(x) + i * g1.c * g1.h * g1.w * es, ms_data(w),
                    (char *)ms_data(y) + i * g1.o * g1.oh * g1.ow * es};
    st = plan_run(d, ms_threads(ctx), pl, ptr, b ? ms_data(b) : NULL, 0, 0, "conv2d");
  }
  return st;
}

int ms_cpu_conv2d_bwd_dnnl(ms_context *ctx, const ms_conv_geom *g, const ms_tensor *gy,
                           const ms_tensor *x, const ms_tensor *w, ms_tensor *dx, ms_tensor *dw,
                           ms_tensor *db) {
  const char *op = "conv2d_backward";
  dnnl_data_type_t dt = dnnl_f32, wdt = dnnl_f32;
  int st = dnnl_type(x, w, op, &dt, &wdt);
  if (st) return st;
  ms_dnnl *d;
  conv_plan *pd = NULL, *pw = NULL;

  int binv = ctx->batch_invariant;
  ms_conv_geom g1;
  int64_t calls = per_sample(ctx, g, dt, KIND_BWD_DATA, &g1), es = ms_dtype_size(x->dtype);
  st = ms_dnnl_get(ctx, &d);
  if (!st && dx)
    st = plan_get(d, KIND_BWD_DATA, &g1, 0, fmt_for(&g1, KIND_BWD_DATA, dt), dt, wdt, binv, &pd);
  if (!st && dw)
    st = plan_get(d, KIND_BWD_W, g, db != NULL, fmt_for(g, KIND_BWD_W, dt), dt,
                  dw->dtype == MS_F32 ? dnnl_f32 : dnnl_bf16, binv, &pw);
  if (st) return st;
  int have_gy = 0;
  if (pd) {
    for (int64_t i = 0; i < calls; i++) {
      void *ptr[3] = {(char *)ms_data(gy) + i * g1.o * g1.oh * g1.ow * es, ms_data(w),
                      (char *)ms_data(dx) + i * g1.c * g1.h * g1.w * es};
      if ((st = plan_run(d, ms_threads(ctx), pd, ptr, NULL, 0, 0, op))) return st;
    }
    /* per sample, the reordered diff_dst left behind is the last sample's only */
    have_gy = calls == 1 && pd->inner[0] != NULL;
  }
  if (pw) {
    /* diff_dst, reordered by backward-data into SLOT_DST, is reused when the formats agree. */
    int reuse =
        have_gy && pw->inner[1] && dnnl_memory_desc_equal(&pd->inner_md[0], &pw->inner_md[1]);
    void *ptr[3] = {ms_data(x), ms_data(gy), ms_data(dw)};
    if ((st = plan_run(d, ms_threads(ctx), pw, ptr, db ? ms_data(db) : NULL, 0, reuse, op)))
      return st;
  } else if (db) {
    ms_cpu_conv2d_bias_grad(ctx, g, gy, db);
  }
  return MS_OK;
}

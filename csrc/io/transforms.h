/* transforms.h: internal pieces of the per-sample augmentation pipeline (csrc/io/transforms*.c). */
#ifndef MS_TRANSFORMS_H
#define MS_TRANSFORMS_H

#include "../core/internal.h"

/* ---- random draws (transforms.c) ----
 * Philox4x32-10 with key = seed and counter = (index, epoch << 32 | op << 20 | block): the
 * draws of the op at position `op` of a pipeline depend only on (seed, epoch, index, op). */
typedef struct tf_rng {
  uint64_t seed, index, hi;
  uint32_t buf[4];
  int used;
  uint32_t block;
} tf_rng;
void tf_rng_init(tf_rng *r, uint64_t seed, uint64_t epoch, uint64_t index, int op);
double tf_unit(tf_rng *r);                          /* uniform in [0, 1), 53 bits */
double tf_uniform(tf_rng *r, double lo, double hi); /* numpy.random.uniform(lo, hi) */
int64_t tf_randint(tf_rng *r, int64_t n);           /* uniform integer in [0, n), n >= 1 */

/* ---- lazily transformed planes (transforms_geometric.c) ----
 * A layer is a source buffer (HWC, u8 or f32) plus pending geometry, applied in this
 * order: a source rectangle, an optional resize of it to rw x rh, an optional window onto
 * that (parts outside are padding), then flips. Materialising evaluates it all in one pass,
 * so resize -> pad/crop -> flip touches only the output pixels. */
typedef struct tf_layer {
  int is_float; /* source elements: f32 or u8 */
  int channels;
  void *buf;
  int own;           /* buf was malloc'ed here */
  int64_t row_elems; /* elements per source row */
  int64_t buf_h;     /* rows in buf */
  int64_t sx0, sy0, sw, sh;
  int resize, interp; /* interp: 0 nearest, 1 bilinear (cv2 INTER_* semantics) */
  int64_t rw, rh;
  int window;
  int64_t x0, y0, ow, oh;
  float pad[4];
  int flipx, flipy;
} tf_layer;

/* Image sinks for materialising. */
enum { TF_SINK_F32_HWC = 0, TF_SINK_U8_TRUNC_HWC = 1, TF_SINK_CHW = 2 };

void tf_layer_init(tf_layer *l, void *buf, int is_float, int channels, int64_t w, int64_t h);
void tf_layer_release(tf_layer *l);
void tf_layer_size(const tf_layer *l, int64_t *w, int64_t *h);
int tf_layer_is_plain(const tf_layer *l);
/* Geometry (no pixels touched unless pending geometry must be evaluated first). */
int tf_layer_resize(tf_layer *l, int64_t w, int64_t h, int interp);
/* Window [x0, x0 + w) x [y0, y0 + h) of the current picture; outside is filled with pad. */
int tf_layer_window(tf_layer *l, int64_t x0, int64_t y0, int64_t w, int64_t h, const float *pad);
void tf_layer_flip(tf_layer *l, int horizontal);
/* Evaluates pending geometry into a new plain buffer: images as f32 or truncated u8
 * (numpy astype('uint8')), labels (u8 sources) always u8. */
int tf_layer_materialize(tf_layer *l, int sink);
/* Final image output: f32 [C, H, W] at dst, normalised when mean/std are given as
 * (x / 255 - mean) / std with numpy's float32/float64 steps. */
int tf_layer_write_chw(tf_layer *l, float *dst, const double *mean, const double *std);
/* Final label output: u8 [H, W] at dst. */
int tf_layer_write_u8(tf_layer *l, uint8_t *dst);

/* ---- colour adjustments on u8 RGB pixels, PIL semantics (transforms_color.c) ---- */
void tf_brightness(uint8_t *px, int64_t n, double factor);
void tf_contrast(uint8_t *px, int64_t n, double factor);
void tf_saturation(uint8_t *px, int64_t n, double factor);
void tf_hue(uint8_t *px, int64_t n, double delta);
int tf_sharpness(uint8_t *px, int64_t w, int64_t h, double factor);

#endif

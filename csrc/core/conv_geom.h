/* conv_geom.h: the validated geometry of a 2-d convolution, shared by csrc/ops and every backend.
 */
#ifndef MS_CONV_GEOM_H
#define MS_CONV_GEOM_H
#include <stdint.h>

typedef struct ms_conv_geom {
  int64_t n, c, h, w; /* input */
  int64_t o, kh, kw;  /* weights [o, c/g, kh, kw] */
  int64_t oh, ow;     /* output */
  int64_t sh, sw, ph, pw, dh, dw, g;
} ms_conv_geom;

#endif

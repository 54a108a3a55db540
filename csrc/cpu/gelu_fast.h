/* gelu_fast.h: the exact (erf) GELU and its derivative in f32 without libm calls, so that their
 * loops vectorise. erfc(z) = t exp(-z^2 + P(t)) with t = 1 / (1 + z / 2) and P of degree 9,
 * fitted for this file (least squares reweighted toward minimax over z in [0, 10]; relative
 * error of erfc 4.5e-8 in exact arithmetic, a few 1e-6 evaluated in f32). 1 + erf(u) is taken
 * as erfc(-u), so the negative tail keeps its relative accuracy where 1 + erff(u) rounds to 0. */
#ifndef MS_GELU_FAST_H
#define MS_GELU_FAST_H

#include "mcsl_kernels.h"

/* erfc(z) for z >= 0 */
static inline float ms_erfc_nonneg_f32(float z) {
  float t = 1.0f / (1.0f + 0.5f * z);
  float p = 1.4220587139e-01f;
  p = p * t - 6.6612630415e-01f;
  p = p * t + 1.1225492339e+00f;
  p = p * t - 6.5144456394e-01f;
  p = p * t - 1.1662693376e-01f;
  p = p * t + 2.0111899523e-02f;
  p = p * t + 2.8385134701e-02f;
  p = p * t + 3.8789401670e-01f;
  p = p * t + 9.9849315924e-01f;
  p = p * t - 1.2654414684e+00f;
  return t * ms_fast_expf(p - z * z);
}

/* 1 + erf(x / sqrt 2), i.e. 2 Phi(x) */
static inline float ms_two_phi_f32(float x) {
  float e = ms_erfc_nonneg_f32(fabsf(x) * 0.70710678118654752f);
  return x >= 0.0f ? 2.0f - e : e;
}

static inline float ms_gelu_f32(float x) { return 0.5f * x * ms_two_phi_f32(x); }

/* d/dx x Phi(x) = Phi(x) + x phi(x) */
static inline float ms_gelu_grad_f32(float x) {
  return 0.5f * ms_two_phi_f32(x) + x * 0.39894228040143268f * ms_fast_expf(-0.5f * x * x);
}

#endif

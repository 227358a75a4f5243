// The GEMV entry points of gemv.cpp, for other native code in this extension (decode_step.cpp), and the
// AVX2 switch and helpers both use.
#pragma once
#include <ATen/ATen.h>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define ZLLM_AVX2 1
#endif

namespace zerollm {

at::Tensor gemv_f32(const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& bias);
at::Tensor gemv_int8(const at::Tensor& x, const at::Tensor& q, const at::Tensor& scales,
                     const c10::optional<at::Tensor>& bias);
at::Tensor gemv_int4(const at::Tensor& x, const at::Tensor& q, const at::Tensor& scales,
                     const c10::optional<at::Tensor>& mins, int64_t group, const c10::optional<at::Tensor>& bias);
at::Tensor gemv_nf4(const at::Tensor& x, const at::Tensor& q, const at::Tensor& levels, const at::Tensor& absmax_q8,
                    const at::Tensor& absmax_s2, double absmax_mean, const c10::optional<at::Tensor>& bias);

#ifdef ZLLM_AVX2
// The sum of the 8 floats of v.
static inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
#endif

}  // namespace zerollm

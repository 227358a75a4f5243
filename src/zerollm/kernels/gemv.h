// The GEMV entry points of gemv.cpp, for other native code in this extension (decode_step.cpp).
#pragma once
#include <ATen/ATen.h>

namespace zerollm {

at::Tensor gemv_f32(const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& bias);
at::Tensor gemv_int8(const at::Tensor& x, const at::Tensor& q, const at::Tensor& scales,
                     const c10::optional<at::Tensor>& bias);
at::Tensor gemv_int4(const at::Tensor& x, const at::Tensor& q, const at::Tensor& scales,
                     const c10::optional<at::Tensor>& mins, int64_t group, const c10::optional<at::Tensor>& bias);
at::Tensor gemv_nf4(const at::Tensor& x, const at::Tensor& q, const at::Tensor& levels, const at::Tensor& absmax_q8,
                    const at::Tensor& absmax_s2, double absmax_mean, const c10::optional<at::Tensor>& bias);

}  // namespace zerollm

// One decode step of the whole stack of decoder blocks in native code: B rows, T new tokens each (T = 1 when
// decoding; a few when speculative decoding verifies a draft or a short prompt is prefilled).
//
// Why: at batch 1 the matmuls are GEMVs that take 8-20 ms per token on GPT-2-124M, and the Python around them
// (module calls, views, the KV-cache writes, SDPA's setup for a single query) added another 4-5 ms per token.
// This op runs the same computation as `Block.forward` (src/zerollm/model/layers.py, the readable reference)
// for every layer in one call: the GEMVs are gemv.cpp's, LayerNorm / GELU / SiLU are ATen's own kernels, and
// what ATen does slowly for one query (writing the cache, attention over the cached keys) is written here.
// tests/engine/test_engine_decode_step.py checks it against the Python path for every architecture switch.
//
// Layout of the per-layer arguments (built by src/zerollm/engine/decode_plan.py, which documents it too):
//   tensors  48 per layer: norm1 w, norm1 b, norm2 w, norm2 b, q_norm w, k_norm w, then 7 linears × 6 slots
//            (weight or codes, scales or NF4 levels, mins, bias, absmax_q8, absmax_s2); absent = None
//            linears: q, k, v, o, then fc, proj (GELU MLP) or gate, up, down (SwiGLU)
//   meta     22 ints per layer: norm (0 LayerNorm, 1 RMSNorm), mlp (0 GELU tanh, 1 GELU erf, 2 SwiGLU),
//            parallel residual, n_head, n_kv_head, head_dim, rotary dims (0 = no RoPE), qk-norm,
//            then per linear: kind (-1 absent, 0 fp32, 1 int8, 2 int4, 3 NF4) and int4 group size
//   fmeta    10 floats per layer: norm1 eps, norm2 eps, qk-norm eps, per linear NF4 absmax mean
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <limits>
#include <vector>

#include "gemv.h"

namespace {

constexpr int N_TENSORS = 48, N_META = 22, N_FMETA = 10, N_LINEARS = 7;
enum Slot { NORM1_W, NORM1_B, NORM2_W, NORM2_B, QNORM_W, KNORM_W, LINEARS };
enum Lin { Q, K, V, O, MLP1, MLP2, MLP3 };  // MLP1/2/3: fc/proj/- (GELU) or gate/up/down (SwiGLU)
static_assert(N_TENSORS == LINEARS + 6 * N_LINEARS && N_META == 8 + 2 * N_LINEARS && N_FMETA == 3 + N_LINEARS,
              "per-layer layout (engine/decode_plan.py builds the same)");

using TensorList = c10::List<c10::optional<at::Tensor>>;

struct Layer {
  const TensorList& t;
  const int64_t* meta;
  const double* fmeta;
  int64_t base;  // index of this layer's first tensor

  c10::optional<at::Tensor> tensor(int64_t slot) const { return t.get(base + slot); }
  c10::optional<at::Tensor> lin_slot(int lin, int j) const { return tensor(LINEARS + lin * 6 + j); }
  int64_t kind(int lin) const { return meta[8 + lin * 2]; }

  at::Tensor linear(int lin, const at::Tensor& x) const {
    const auto bias = lin_slot(lin, 3);
    switch (kind(lin)) {
      case 0: return zerollm::gemv_f32(x, *lin_slot(lin, 0), bias);
      case 1: return zerollm::gemv_int8(x, *lin_slot(lin, 0), *lin_slot(lin, 1), bias);
      case 2: return zerollm::gemv_int4(x, *lin_slot(lin, 0), *lin_slot(lin, 1), lin_slot(lin, 2), meta[9 + lin * 2],
                                        bias);
      case 3: return zerollm::gemv_nf4(x, *lin_slot(lin, 0), *lin_slot(lin, 1), *lin_slot(lin, 4), *lin_slot(lin, 5),
                                       fmeta[3 + lin], bias);
    }
    TORCH_CHECK(false, "zerollm decode_layers: linear ", lin, " has unknown kind ", kind(lin));
    return {};  // (unreachable: TORCH_CHECK throws)
  }

  at::Tensor norm(int which, const at::Tensor& x) const {
    const auto w = tensor(which == 1 ? NORM1_W : NORM2_W), b = tensor(which == 1 ? NORM1_B : NORM2_B);
    const double eps = fmeta[which == 1 ? 0 : 1];
    if (meta[0] == 0) return at::layer_norm(x, {x.size(-1)}, w, b, eps);
    return rms_norm(x, *w, eps);
  }

  // RMSNorm (Zhang & Sennrich 2019): x / sqrt(mean(x²) + eps) · g over the last dim, as layers.RMSNorm
  static at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& g, double eps) {
    return g * (x * at::rsqrt(x.pow(2).mean(-1, true) + eps));
  }
};

// ---- attention for a few new queries (AVX2, with scalar fallbacks) -------------------------------------------

#ifdef ZLLM_AVX2
// e^x for 8 floats: x = n·ln2 + r with |r| ≤ ln2/2, e^r by its Taylor series to r⁶ (error < 2e-7 relative),
// 2^n built in the exponent bits. Inputs below -87.3 (incl. -inf, masked keys) give exactly 0.
static inline __m256 exp8(__m256 x) {
  const __m256 lo = _mm256_set1_ps(-87.3f);
  const __m256 zero_mask = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
  x = _mm256_min_ps(_mm256_max_ps(x, lo), _mm256_set1_ps(88.f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);  // ln2 in two parts, so r stays exact
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.f / 720);
  for (float c : {1.f / 120, 1.f / 24, 1.f / 6, 0.5f, 1.f, 1.f}) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
  const __m256i pow2n = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_andnot_ps(zero_mask, _mm256_mul_ps(p, _mm256_castsi256_ps(pow2n)));
}
#endif

// s[j] = q·k_j · scale for the L keys (rows of hd floats); four keys at a time, so four FMA chains overlap.
static void scores(const float* q, const float* k, int64_t L, int64_t hd, float scale, float* s) {
  int64_t j = 0;
#ifdef ZLLM_AVX2
  if (hd % 8 == 0) {
    for (; j + 4 <= L; j += 4) {
      const float* kj = k + j * hd;
      __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
      for (int64_t d = 0; d < hd; d += 8) {
        const __m256 qv = _mm256_loadu_ps(q + d);
        a0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(kj + d), a0);
        a1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(kj + hd + d), a1);
        a2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(kj + 2 * hd + d), a2);
        a3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(kj + 3 * hd + d), a3);
      }
      s[j] = zerollm::hsum(a0) * scale, s[j + 1] = zerollm::hsum(a1) * scale, s[j + 2] = zerollm::hsum(a2) * scale, s[j + 3] = zerollm::hsum(a3) * scale;
    }
  }
#endif
  for (; j < L; ++j) {
    float a = 0.f;
    for (int64_t d = 0; d < hd; ++d) a += q[d] * k[j * hd + d];
    s[j] = a * scale;
  }
}

// p[j] = exp(p[j] - max) in place; returns the sum.
static float exp_shifted(float* p, int64_t L, float mx) {
  int64_t j = 0;
  float sum = 0.f;
#ifdef ZLLM_AVX2
  __m256 acc = _mm256_setzero_ps();
  for (; j + 8 <= L; j += 8) {
    const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(p + j), _mm256_set1_ps(mx)));
    _mm256_storeu_ps(p + j, e);
    acc = _mm256_add_ps(acc, e);
  }
  sum = zerollm::hsum(acc);
#endif
  for (; j < L; ++j) sum += (p[j] = std::exp(p[j] - mx));
  return sum;
}

// o = Σ_j w_j v_j over the L value rows, 64 output channels at a time held in registers.
static void weighted_sum(const float* w, const float* v, int64_t L, int64_t hd, float* o) {
#ifdef ZLLM_AVX2
  if (hd % 8 == 0) {
    for (int64_t d0 = 0; d0 < hd; d0 += 64) {
      const int nc = static_cast<int>(std::min<int64_t>(64, hd - d0) / 8);
      __m256 acc[8];
      for (int c = 0; c < 8; ++c) acc[c] = _mm256_setzero_ps();
      for (int64_t j = 0; j < L; ++j) {
        if (w[j] == 0.f) continue;  // masked (padding) slots
        const __m256 wj = _mm256_set1_ps(w[j]);
        const float* vj = v + j * hd + d0;
        for (int c = 0; c < nc; ++c) acc[c] = _mm256_fmadd_ps(wj, _mm256_loadu_ps(vj + 8 * c), acc[c]);
      }
      for (int c = 0; c < nc; ++c) _mm256_storeu_ps(o + d0 + 8 * c, acc[c]);
    }
    return;
  }
#endif
  for (int64_t d = 0; d < hd; ++d) o[d] = 0.f;
  for (int64_t j = 0; j < L; ++j)
    for (int64_t d = 0; d < hd; ++d) o[d] += w[j] * v[j * hd + d];
}

// RoPE on the first `rot` channels of each head, in place (Su et al. 2021, eq. 34; rotate_half channel order):
// channel j < rot/2 pairs with j + rot/2: (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin); x (B, heads·hd),
// cos/sin (B, rot): one row per token.
static void rope_(float* x, int64_t B, int64_t heads, int64_t hd, int64_t rot, const float* cos, const float* sin) {
  const int64_t half = rot / 2;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < heads; ++h) {
      float* v = x + (b * heads + h) * hd;
      const float *c = cos + b * rot, *s = sin + b * rot;
      for (int64_t j = 0; j < half; ++j) {
        const float x1 = v[j], x2 = v[j + half];
        v[j] = x1 * c[j] - x2 * s[j];
        v[j + half] = x2 * c[j + half] + x1 * s[j + half];
      }
    }
}

// softmax(q kᵀ / sqrt(hd)) v (Vaswani et al. 2017, eq. 1) for the T new queries of each of the B rows.
// q (B·T, H·hd), row b·T + t is the query at cache slot pos + t; caches (B, Hkv, max_len, hd) already hold this
// step's keys/values at slots [pos, pos + T). Query head h reads kv head h / (H / Hkv) (grouped-query
// attention). Query t sees slots j ≤ pos + t (causal), and with left padding (valid (B, max_len)) only those
// with valid[b, j] plus its own — the mask KVCache.attn_mask builds for the Python path.
static at::Tensor attend(const at::Tensor& q, const at::Tensor& kc, const at::Tensor& vc, int64_t pos, int64_t T,
                         const c10::optional<at::Tensor>& valid, int64_t H, int64_t Hkv, int64_t hd) {
  const int64_t BT = q.size(0), max_len = kc.size(2), rep = H / Hkv;
  at::Tensor out = at::empty({BT, H * hd}, q.options());
  const float *qp = q.data_ptr<float>(), *kp = kc.data_ptr<float>(), *vp = vc.data_ptr<float>();
  const bool* vm = valid.has_value() ? valid->data_ptr<bool>() : nullptr;
  float* op = out.data_ptr<float>();
  const float scale = 1.f / std::sqrt(static_cast<float>(hd));
  at::parallel_for(0, BT * H, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> p(pos + T);
    for (int64_t i = begin; i < end; ++i) {
      const int64_t bt = i / H, h = i % H, b = bt / T, self = pos + bt % T, L = self + 1, g = h / rep;
      const float* kb = kp + (b * Hkv + g) * max_len * hd;
      const float* vb = vp + (b * Hkv + g) * max_len * hd;
      scores(qp + i * hd, kb, L, hd, scale, p.data());
      float mx = -std::numeric_limits<float>::infinity();
      for (int64_t j = 0; j < L; ++j) {
        if (vm != nullptr && j != self && !vm[b * max_len + j]) p[j] = -std::numeric_limits<float>::infinity();
        mx = std::max(mx, p[j]);
      }
      const float inv = 1.f / exp_shifted(p.data(), L, mx);
      for (int64_t j = 0; j < L; ++j) p[j] *= inv;
      weighted_sum(p.data(), vb, L, hd, op + i * hd);
    }
  });
  return out;
}

// Write this step's k/v (B·T, Hkv·hd) into slots [pos, pos + T) of the caches (B, Hkv, max_len, hd).
static void write_cache(const at::Tensor& kv, const at::Tensor& cache, int64_t pos, int64_t T, int64_t Hkv,
                        int64_t hd) {
  const int64_t B = cache.size(0), max_len = cache.size(2);
  const float* src = kv.data_ptr<float>();
  float* dst = cache.data_ptr<float>();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t g = 0; g < Hkv; ++g) {
        const float* from = src + ((b * T + t) * Hkv + g) * hd;
        std::copy(from, from + hd, dst + ((b * Hkv + g) * max_len + pos + t) * hd);
      }
}

static void check_cache(const at::Tensor& c, int64_t B, int64_t Hkv, int64_t hd, int64_t end) {
  TORCH_CHECK(c.scalar_type() == at::kFloat && c.is_contiguous() && c.dim() == 4 && c.size(0) == B &&
                  c.size(1) == Hkv && c.size(3) == hd,
              "zerollm decode_layers: KV cache must be contiguous float32 (", B, ", ", Hkv, ", max_len, ", hd,
              "), got ", c.sizes());
  TORCH_CHECK(end <= c.size(2), "zerollm decode_layers: KV cache overflow: ", end, " > ", c.size(2), " slots");
}

at::Tensor decode_layers(const at::Tensor& x_in, const TensorList& tensors, at::IntArrayRef meta,
                         at::ArrayRef<double> fmeta, at::TensorList k_cache, at::TensorList v_cache, int64_t pos,
                         const c10::optional<at::Tensor>& cos, const c10::optional<at::Tensor>& sin,
                         const c10::optional<at::Tensor>& valid) {
  const int64_t n_layer = static_cast<int64_t>(k_cache.size());
  TORCH_CHECK(static_cast<int64_t>(tensors.size()) == n_layer * N_TENSORS &&
                  static_cast<int64_t>(meta.size()) == n_layer * N_META &&
                  static_cast<int64_t>(fmeta.size()) == n_layer * N_FMETA &&
                  static_cast<int64_t>(v_cache.size()) == n_layer,
              "zerollm decode_layers: argument lists do not describe ", n_layer, " layers");
  TORCH_CHECK(x_in.scalar_type() == at::kFloat && x_in.device().is_cpu(), "zerollm decode_layers: x must be "
              "float32 on the CPU");
  TORCH_CHECK(x_in.dim() == 3, "zerollm decode_layers: x must be (B, T, D), got ", x_in.sizes());
  const int64_t B = x_in.size(0), T = x_in.size(1), D = x_in.size(2);
  at::Tensor x = x_in.reshape({B * T, D}).contiguous();  // row b·T + t: token t of row b
  const int64_t BT = B * T;
  if (valid.has_value())
    TORCH_CHECK(valid->scalar_type() == at::kBool && valid->is_contiguous() && valid->size(0) == B,
                "zerollm decode_layers: valid must be a contiguous bool (B, max_len) tensor");
  for (int64_t l = 0; l < n_layer; ++l) {
    const Layer L{tensors, meta.data() + l * N_META, fmeta.data() + l * N_FMETA, l * N_TENSORS};
    const int64_t H = L.meta[3], Hkv = L.meta[4], hd = L.meta[5], rot = L.meta[6];
    check_cache(k_cache[l], B, Hkv, hd, pos + T);
    check_cache(v_cache[l], B, Hkv, hd, pos + T);

    // attention: norm -> q, k, v -> (qk-norm) -> RoPE -> cache -> attend -> o
    const at::Tensor h = L.norm(1, x);
    at::Tensor q = L.linear(Q, h), k = L.linear(K, h), v = L.linear(V, h);  // (BT, H·hd), (BT, Hkv·hd) ×2
    if (L.meta[7]) {  // Qwen3: RMSNorm over each head's channels, before RoPE
      q = Layer::rms_norm(q.view({BT, H, hd}), *L.tensor(QNORM_W), L.fmeta[2]).reshape({BT, H * hd});
      k = Layer::rms_norm(k.view({BT, Hkv, hd}), *L.tensor(KNORM_W), L.fmeta[2]).reshape({BT, Hkv * hd});
    }
    if (rot > 0) {
      TORCH_CHECK(cos.has_value() && sin.has_value() && cos->size(-1) == rot && cos->numel() == BT * rot,
                  "zerollm decode_layers: RoPE needs cos/sin of shape (B·T, ", rot, ")");
      const at::Tensor c = cos->contiguous(), s = sin->contiguous();
      rope_(q.data_ptr<float>(), BT, H, hd, rot, c.data_ptr<float>(), s.data_ptr<float>());
      rope_(k.data_ptr<float>(), BT, Hkv, hd, rot, c.data_ptr<float>(), s.data_ptr<float>());
    }
    write_cache(k, k_cache[l], pos, T, Hkv, hd);
    write_cache(v, v_cache[l], pos, T, Hkv, hd);
    const at::Tensor a = L.linear(O, attend(q, k_cache[l], v_cache[l], pos, T, valid, H, Hkv, hd));

    // MLP, sequential (x + attn, then + mlp) or parallel (x + attn + mlp, GPT-NeoX) residual
    const at::Tensor xm = L.meta[2] ? x : x + a;
    const at::Tensor h2 = L.norm(2, xm);
    at::Tensor mlp;
    if (L.meta[1] == 2) {  // SwiGLU: down(silu(gate(x)) · up(x))
      mlp = L.linear(MLP3, at::silu(L.linear(MLP1, h2)).mul_(L.linear(MLP2, h2)));
    } else {  // GELU: proj(gelu(fc(x))), tanh approximation (GPT-2) or exact (GPT-NeoX)
      mlp = L.linear(MLP2, at::gelu(L.linear(MLP1, h2), L.meta[1] == 0 ? "tanh" : "none"));
    }
    x = L.meta[2] ? x + a + mlp : xm + mlp;
  }
  return x.view(x_in.sizes());
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(zerollm_kernels, m) {
  m.def("decode_layers(Tensor x, Tensor?[] tensors, int[] meta, float[] fmeta, Tensor[] k_cache, "
        "Tensor[] v_cache, int pos, Tensor? cos, Tensor? sin, Tensor? valid) -> Tensor");
}

TORCH_LIBRARY_IMPL(zerollm_kernels, CPU, m) { m.impl("decode_layers", &decode_layers); }

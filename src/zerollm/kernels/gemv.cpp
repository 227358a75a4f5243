// Weight-streaming matrix-vector kernels for decoding on CPU: y (M, N) = x (M, K) · Wᵀ (+ b), W stored (N, K)
// in fp32, int8 (per output row scale), int4 (groups of 32·j input columns, symmetric or asymmetric) or NF4
// (blocks of 64 with double-quantized absmax), for the few rows M of a decode step (1 token × batch).
//
// Why: at batch 1 every weight is read once per token, so tokens/s is bounded by memory bandwidth / weight
// bytes. torch's CPU paths either dequantize the whole matrix first (writes and re-reads 4 bytes per weight)
// or use int8/int4 kernels tuned for large M. Here each weight row is read once and used for up to 8 activation
// rows while it is in registers. Rows are split across torch's intra-op threads (at::parallel_for).
//
// fp32 weights: plain FMA dot products (the result equals F.linear up to the order of the additions). On
// GPT-2-124M decoding (2 threads, with decode_step.cpp around them): 50 vs 30 tokens/s for MKL at batch 1, and
// batch 8 at 4.8x the aggregate of batch 1 — MKL's multi-row GEMV re-reads the weights, this reads each row once
// for all rows.
//
// Quantized weights: decoding 4-bit codes to floats costs more instructions than reading them, so (as
// llama.cpp's q8_0 dot products do) the activations are quantized too, per block of 32 values:
//     xq = round(x / dx), dx = absmax(block) / 127          (int8; relative error ≤ 1/254 of the block max)
// and each block's dot product is computed in integers, 32 products in two instructions
// (_mm256_maddubs_epi16 multiplies unsigned by signed bytes, so |w| · sign(x, w) = w · x), then scaled:
//     y[m, n] = Σ_blocks  dx[m, b] · dw[n, b] · Σ_{k in b} wq[n, k] · xq[m, k]   (+ asym: min[n, b] · Σ_b x)
// `quantize_activations` in zerollm/kernels/__init__.py is the same activation rounding in PyTorch (tests).
//
// Weight layouts (see src/zerollm/model/quant.py):
//   int8   q (N, K) int8, scales (N)                         W[n,k] = q[n,k] * s[n]
//   int4   q (N, K/2) uint8, two codes per byte, high nibble first; scales (N, G) [, mins (N, G)], G = K/g
//          sym:  W = (code - 8) * s[n, k/g]          asym: W = code * s[n, k/g] + min[n, k/g]
//   nf4    q (N, K/2) as int4; blocks of 64 consecutive values of the flattened (N*K) weight share an absmax
//          absmax[b] = absmax_q8[b] * absmax_s2[b / 256] + absmax_mean;   W = NF4_LEVELS[code] * absmax[b]
//          (the 16 levels enter the integer dot product as round(127 * level) / 127)
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "gemv.h"

#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>


namespace {

// Loops over the M activation rows and R weight rows must be unrolled completely, or GCC keeps the
// accumulators in memory and stores them on every iteration (seen at M = 4 and 8: 30 % slower).
#define ZLLM_UNROLL _Pragma("GCC unroll 8")

constexpr int BLOCK = 32;  // values per quantized dot-product block
constexpr int MAX_M = 8;   // activation rows handled per pass over the weights

// ---- shared driver ------------------------------------------------------------------------------------------

// Runs Family::Kernel<M, R>{}(ctx, m0, n) over the weight rows, R consecutive rows n..n+R-1 at a time, for the
// activation rows in passes of at most 8, splitting weight rows over threads. Kernel is instantiated per (M, R)
// so the inner loops are fully unrolled. Several weight rows per pass matter at small M: each row is its own
// memory stream and its own accumulator chain, so 8 rows at M = 1 keep more loads in flight and more FMAs
// independent than one row at a time (GPT-2-124M weights, 2 threads, a one-off timing: 25 vs 20 GB/s).
template <class Family, class Ctx>
static void for_all_rows(const Ctx& ctx, int64_t rows, int64_t N) {
  for (int64_t m0 = 0; m0 < rows; m0 += MAX_M) {
    const int64_t mb = std::min<int64_t>(MAX_M, rows - m0);
    auto run = [&](auto m_tag) {
      constexpr int M = decltype(m_tag)::value;
      constexpr int R = Family::rows_per_pass(M);
      // grain: enough rows per task that the per-task cost is noise, few enough that 2+ threads share the work
      at::parallel_for(0, N, 64, [&](int64_t begin, int64_t end) {
        int64_t n = begin;
        for (; n + R <= end; n += R) typename Family::template Kernel<M, R>{}(ctx, m0, n);
        for (; n < end; ++n) typename Family::template Kernel<M, 1>{}(ctx, m0, n);
      });
    };
    switch (mb) {
      case 1: run(std::integral_constant<int, 1>{}); break;
      case 2: run(std::integral_constant<int, 2>{}); break;
      case 3: run(std::integral_constant<int, 3>{}); break;
      case 4: run(std::integral_constant<int, 4>{}); break;
      case 5: run(std::integral_constant<int, 5>{}); break;
      case 6: run(std::integral_constant<int, 6>{}); break;
      case 7: run(std::integral_constant<int, 7>{}); break;
      default: run(std::integral_constant<int, 8>{}); break;
    }
  }
}

static const float* bias_ptr(const c10::optional<at::Tensor>& bias, int64_t N) {
  if (!bias.has_value()) return nullptr;
  TORCH_CHECK(bias->scalar_type() == at::kFloat && bias->is_contiguous() && bias->numel() == N,
              "zerollm gemv: bias must be a contiguous float32 vector of ", N);
  return bias->data_ptr<float>();
}

static void check_weight(const at::Tensor& t, at::ScalarType dtype, const char* name) {
  TORCH_CHECK(t.scalar_type() == dtype, "zerollm gemv: ", name, " has dtype ", t.scalar_type());
  TORCH_CHECK(t.is_contiguous(), "zerollm gemv: ", name, " must be contiguous");
  TORCH_CHECK(t.device().is_cpu(), "zerollm gemv: ", name, " must be on the CPU");
}

static at::Tensor as_rows(const at::Tensor& x_in, int64_t K) {
  TORCH_CHECK(x_in.scalar_type() == at::kFloat, "zerollm gemv: activations must be float32");
  TORCH_CHECK(x_in.size(-1) == K, "zerollm gemv: activations have ", x_in.size(-1), " features, weight has ", K);
  TORCH_CHECK(K % BLOCK == 0, "zerollm gemv: in_features must be a multiple of ", BLOCK, ", got ", K);
  return x_in.reshape({-1, K}).contiguous();
}

static at::Tensor out_like(const at::Tensor& x_in, int64_t N) {
  auto shape = x_in.sizes().vec();
  shape.back() = N;
  return at::empty(shape, x_in.options());
}

// ---- fp32 weights -------------------------------------------------------------------------------------------

struct F32Ctx {
  const float *x, *w, *bias;
  float* y;
  int64_t K, N;
};

struct F32 {
  // Registers: MC·R accumulators (one FMA chain each; 8 keep both FMA units busy) + R weights + 1 activation
  // ≤ 16, for chunks of MC ≤ 4 activation rows. Three or more activation rows go in two chunks over the same R
  // weight rows, the second reading them from L1 while it prefetches the next R rows: fewer loads per FMA than
  // one weight row against all activation rows, and memory stays busy (GPT-2-124M weights, 8 rows, 2 threads:
  // 28 ms vs 38 ms for one chunk of 8 without the prefetch, a one-off timing).
  static constexpr int rows_per_pass(int M) { return M == 1 ? 8 : M <= 4 ? 4 : 2; }

  template <int MC, int R>
  static void chunk(const float* w, const float* x, int64_t K, float out[][R], const float* next = nullptr) {
#ifdef ZLLM_AVX2
    __m256 acc[MC][R];
    ZLLM_UNROLL for (int m = 0; m < MC; ++m)
      ZLLM_UNROLL for (int r = 0; r < R; ++r) acc[m][r] = _mm256_setzero_ps();
    for (int64_t k = 0; k < K; k += 8) {
      __m256 wv[R];
      ZLLM_UNROLL for (int r = 0; r < R; ++r) wv[r] = _mm256_loadu_ps(w + r * K + k);
      if (next != nullptr && (k & 15) == 0)  // one 64-byte line of each of the next R rows per 16 floats
        ZLLM_UNROLL for (int r = 0; r < R; ++r) _mm_prefetch(reinterpret_cast<const char*>(next + r * K + k), _MM_HINT_T0);
      ZLLM_UNROLL for (int m = 0; m < MC; ++m) {
        const __m256 xv = _mm256_loadu_ps(x + m * K + k);
        ZLLM_UNROLL for (int r = 0; r < R; ++r) acc[m][r] = _mm256_fmadd_ps(wv[r], xv, acc[m][r]);
      }
    }
    ZLLM_UNROLL for (int m = 0; m < MC; ++m)
      ZLLM_UNROLL for (int r = 0; r < R; ++r) out[m][r] = zerollm::hsum(acc[m][r]);
#else
    for (int m = 0; m < MC; ++m)
      for (int r = 0; r < R; ++r) {
        float a = 0.f;
        for (int64_t k = 0; k < K; ++k) a += w[r * K + k] * x[m * K + k];
        out[m][r] = a;
      }
#endif
  }

  template <int M, int R>
  struct Kernel {
    void operator()(const F32Ctx& c, int64_t m0, int64_t n) const {
      const int64_t K = c.K;
      const float* w = c.w + n * K;
      const float* x = c.x + m0 * K;
      constexpr int M1 = M <= 2 ? M : M <= 4 ? 2 : 4, M2 = M - M1;  // activation rows in the two chunks
      float out[M][R];
      chunk<M1, R>(w, x, K, out);
      // the second chunk reads this pass's weights from L1 and sends no requests to memory by itself: it
      // prefetches the next R rows meanwhile (the pointer may run past the matrix: prefetches never fault)
      if constexpr (M2 > 0) chunk<M2, R>(w, x + M1 * K, K, out + M1, w + R * K);
      ZLLM_UNROLL for (int m = 0; m < M; ++m)
        ZLLM_UNROLL for (int r = 0; r < R; ++r) c.y[(m0 + m) * c.N + n + r] = out[m][r] + (c.bias ? c.bias[n + r] : 0.f);
    }
  };
};

}  // namespace

namespace zerollm {

at::Tensor gemv_f32(const at::Tensor& x_in, const at::Tensor& w, const c10::optional<at::Tensor>& bias) {
  check_weight(w, at::kFloat, "weight");
  const int64_t N = w.size(0), K = w.size(1);
  at::Tensor x = as_rows(x_in, K), y = out_like(x_in, N);
  F32Ctx ctx{x.data_ptr<float>(), w.data_ptr<float>(), bias_ptr(bias, N), y.data_ptr<float>(), K, N};
  for_all_rows<F32>(ctx, x.size(0), N);
  return y;
}

namespace {  // helpers of the quantized kernels

// ---- quantized weights × int8 activations ----------------------------------------------------------------

// Activations quantized per block of 32: xq int8, dx (scale), xsum = dx · Σ xq (for asymmetric weights).
struct QuantX {
  std::vector<int8_t> q;
  std::vector<float> d, sum;
  QuantX(const float* x, int64_t rows, int64_t K) : q(rows * K), d(rows * K / BLOCK), sum(rows * K / BLOCK) {
    for (int64_t b = 0; b < rows * K / BLOCK; ++b) {
      const float* xb = x + b * BLOCK;
      float amax = 0.f;
      for (int j = 0; j < BLOCK; ++j) amax = std::max(amax, std::fabs(xb[j]));
      const float dx = amax / 127.f, inv = amax > 0.f ? 127.f / amax : 0.f;
      int s = 0;
      for (int j = 0; j < BLOCK; ++j) {
        const int v = static_cast<int>(std::nearbyint(xb[j] * inv));  // round half to even, like torch.round
        q[b * BLOCK + j] = static_cast<int8_t>(v);
        s += v;
      }
      d[b] = dx;
      sum[b] = dx * static_cast<float>(s);
    }
  }
};

// What a weight format supplies per row n and block b: 32 integer weights (signed, or unsigned for
// asymmetric int4), the block's scale, and (asymmetric only) the block's offset.
enum class Kind { Int8, Int4Sym, Int4Asym, NF4 };

struct QCtx {
  Kind kind;
  const QuantX* x;
  const uint8_t* q;        // codes (int8 reinterpret for Kind::Int8)
  const float* scales;     // int8: (N); int4: (N, G)
  const float* mins;       // int4 asym: (N, G)
  const int8_t* nf4_lut;   // 16 levels as round(127 * level)
  const int8_t* absmax_q8;
  const float* absmax_s2;
  float absmax_mean;
  const float* bias;
  float* y;
  int64_t K, N, group;
};

#ifdef ZLLM_AVX2
// 16 packed bytes -> 32 codes in order (high nibble of byte i is value 2i, low nibble value 2i+1)
static inline __m256i unpack_nibbles(const uint8_t* p) {
  const __m128i mask = _mm_set1_epi8(0x0F);
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 4), mask), lo = _mm_and_si128(b, mask);
  return _mm256_set_m128i(_mm_unpackhi_epi8(hi, lo), _mm_unpacklo_epi8(hi, lo));
}
#endif

static inline int code_at(const uint8_t* row, int64_t k) {
  const uint8_t byte = row[k / 2];
  return (k & 1) ? (byte & 0xF) : (byte >> 4);
}

// One pass: R weight rows against M activation rows. KIND is a template parameter so that each format's loop is
// compiled without per-block branches. Blocks are visited group by group, a group being the blocks that share one
// weight scale (the whole row for int8, group/32 blocks for int4, 2 for NF4's 64-value absmax blocks), so finding
// a block's scale costs nothing inside the loop.
template <Kind KIND>
struct QKernels {
  // at M = 1, 4 rows give 4 independent accumulator chains and share each activation load
  static constexpr int rows_per_pass(int M) { return M == 1 ? 4 : M == 2 ? 2 : 1; }

  template <int M, int R>
  struct Kernel {
    void operator()(const QCtx& c, int64_t m0, int64_t n) const {
      const int64_t K = c.K, nb = K / BLOCK;
      const int64_t gb = KIND == Kind::Int8 ? nb : KIND == Kind::NF4 ? 2 : c.group / BLOCK;  // blocks per group
      const int64_t G = nb / gb;
      const int8_t* xq = c.x->q.data() + m0 * K;
      const float* dx = c.x->d.data() + m0 * nb;
      const float* xsum = c.x->sum.data() + m0 * nb;
      constexpr bool packed = KIND != Kind::Int8;
      constexpr bool unsigned_w = KIND == Kind::Int4Asym;
      const int64_t row_bytes = packed ? K / 2 : K;
      const uint8_t* row0 = c.q + n * row_bytes;
      float offset[M][R] = {};  // asymmetric mins · Σx (and the whole sum on the scalar path)
#ifdef ZLLM_AVX2
      __m256 acc[M][R];
      ZLLM_UNROLL for (int m = 0; m < M; ++m)
        ZLLM_UNROLL for (int r = 0; r < R; ++r) acc[m][r] = _mm256_setzero_ps();
      const __m256i ones = _mm256_set1_epi16(1);
      const __m256i eight = _mm256_set1_epi8(8);
      const __m256i lut = c.nf4_lut ? _mm256_broadcastsi128_si256(_mm_loadu_si128(
                                          reinterpret_cast<const __m128i*>(c.nf4_lut)))
                                    : _mm256_setzero_si256();
#endif
      for (int64_t g = 0; g < G; ++g) {
        float dw[R], mn[R];  // this group's weight scale (and asymmetric offset) per row
        ZLLM_UNROLL for (int r = 0; r < R; ++r) {
          if constexpr (KIND == Kind::Int8) {
            dw[r] = 1.f;  // the row scale is applied at the end
          } else if constexpr (KIND == Kind::NF4) {
            const int64_t blk = (n + r) * K / 64 + g;
            dw[r] = (static_cast<float>(c.absmax_q8[blk]) * c.absmax_s2[blk / 256] + c.absmax_mean) / 127.f;
          } else {
            dw[r] = c.scales[(n + r) * G + g];
          }
          mn[r] = KIND == Kind::Int4Asym ? c.mins[(n + r) * G + g] : 0.f;
        }
        for (int64_t b = g * gb; b < (g + 1) * gb; ++b) {
          const int64_t k = b * BLOCK;
          if constexpr (KIND == Kind::Int4Asym)
            ZLLM_UNROLL for (int m = 0; m < M; ++m)
              ZLLM_UNROLL for (int r = 0; r < R; ++r) offset[m][r] += mn[r] * xsum[m * nb + b];
#ifdef ZLLM_AVX2
          __m256i w[R], aw[R];
          ZLLM_UNROLL for (int r = 0; r < R; ++r) {
            const uint8_t* row = row0 + r * row_bytes;
            if constexpr (KIND == Kind::Int8) {
              w[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + k));
            } else {
              w[r] = unpack_nibbles(row + k / 2);
              if constexpr (KIND == Kind::Int4Sym) w[r] = _mm256_sub_epi8(w[r], eight);
              if constexpr (KIND == Kind::NF4) w[r] = _mm256_shuffle_epi8(lut, w[r]);  // 16-entry lookup per byte
            }
            aw[r] = unsigned_w ? w[r] : _mm256_sign_epi8(w[r], w[r]);  // |w|
          }
          ZLLM_UNROLL for (int m = 0; m < M; ++m) {
            const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + m * K + k));
            const float dxm = dx[m * nb + b];
            ZLLM_UNROLL for (int r = 0; r < R; ++r) {
              const __m256i xs = unsigned_w ? xv : _mm256_sign_epi8(xv, w[r]);  // |w| · (x · sign(w)) = w · x
              const __m256i s32 = _mm256_madd_epi16(_mm256_maddubs_epi16(aw[r], xs), ones);
              acc[m][r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s32), _mm256_set1_ps(dw[r] * dxm), acc[m][r]);
            }
          }
#else
          ZLLM_UNROLL for (int r = 0; r < R; ++r) {
            const uint8_t* row = row0 + r * row_bytes;
            ZLLM_UNROLL for (int m = 0; m < M; ++m) {
              int s = 0;
              for (int j = 0; j < BLOCK; ++j) {
                int wv;
                if constexpr (KIND == Kind::Int8) wv = reinterpret_cast<const int8_t*>(row)[k + j];
                else if constexpr (KIND == Kind::Int4Sym) wv = code_at(row, k + j) - 8;
                else if constexpr (KIND == Kind::Int4Asym) wv = code_at(row, k + j);
                else wv = c.nf4_lut[code_at(row, k + j)];
                s += wv * xq[m * K + k + j];
              }
              offset[m][r] += static_cast<float>(s) * dw[r] * dx[m * nb + b];
            }
          }
#endif
        }
      }
      ZLLM_UNROLL for (int m = 0; m < M; ++m)
        ZLLM_UNROLL for (int r = 0; r < R; ++r) {
#ifdef ZLLM_AVX2
          const float dot = zerollm::hsum(acc[m][r]);
#else
          const float dot = 0.f;  // (the scalar path accumulated everything in offset)
#endif
          const float rs = KIND == Kind::Int8 ? c.scales[n + r] : 1.f;
          c.y[(m0 + m) * c.N + n + r] = (dot + offset[m][r]) * rs + (c.bias ? c.bias[n + r] : 0.f);
        }
    }
  };
};

static at::Tensor run_quant(QCtx ctx, const at::Tensor& x_in, int64_t N, int64_t K) {
  at::Tensor x = as_rows(x_in, K), y = out_like(x_in, N);
  QuantX xq(x.data_ptr<float>(), x.size(0), K);
  ctx.x = &xq;
  ctx.y = y.data_ptr<float>();
  ctx.K = K;
  ctx.N = N;
  switch (ctx.kind) {
    case Kind::Int8: for_all_rows<QKernels<Kind::Int8>>(ctx, x.size(0), N); break;
    case Kind::Int4Sym: for_all_rows<QKernels<Kind::Int4Sym>>(ctx, x.size(0), N); break;
    case Kind::Int4Asym: for_all_rows<QKernels<Kind::Int4Asym>>(ctx, x.size(0), N); break;
    case Kind::NF4: for_all_rows<QKernels<Kind::NF4>>(ctx, x.size(0), N); break;
  }
  return y;
}

}  // namespace

at::Tensor gemv_int8(const at::Tensor& x, const at::Tensor& q, const at::Tensor& scales,
                     const c10::optional<at::Tensor>& bias) {
  check_weight(q, at::kChar, "qweight");
  check_weight(scales, at::kFloat, "scales");
  const int64_t N = q.size(0);
  QCtx ctx{Kind::Int8, nullptr, reinterpret_cast<const uint8_t*>(q.data_ptr<int8_t>()), scales.data_ptr<float>(),
           nullptr, nullptr, nullptr, nullptr, 0.f, bias_ptr(bias, N), nullptr, 0, 0, BLOCK};
  return run_quant(ctx, x, N, q.size(1));
}

at::Tensor gemv_int4(const at::Tensor& x, const at::Tensor& q, const at::Tensor& scales,
                     const c10::optional<at::Tensor>& mins, int64_t group, const c10::optional<at::Tensor>& bias) {
  check_weight(q, at::kByte, "qweight");
  check_weight(scales, at::kFloat, "scales");
  const int64_t N = q.size(0), K = q.size(1) * 2;
  TORCH_CHECK(group % BLOCK == 0 && scales.size(1) * group == K, "zerollm gemv_int4: group ", group,
              " does not fit in_features ", K);
  const float* mp = nullptr;
  if (mins.has_value()) {
    check_weight(*mins, at::kFloat, "mins");
    mp = mins->data_ptr<float>();
  }
  QCtx ctx{mp ? Kind::Int4Asym : Kind::Int4Sym, nullptr, q.data_ptr<uint8_t>(), scales.data_ptr<float>(), mp,
           nullptr, nullptr, nullptr, 0.f, bias_ptr(bias, N), nullptr, 0, 0, group};
  return run_quant(ctx, x, N, K);
}

at::Tensor gemv_nf4(const at::Tensor& x, const at::Tensor& q, const at::Tensor& levels, const at::Tensor& absmax_q8,
                    const at::Tensor& absmax_s2, double absmax_mean, const c10::optional<at::Tensor>& bias) {
  check_weight(q, at::kByte, "qweight");
  check_weight(levels, at::kFloat, "levels");
  check_weight(absmax_q8, at::kChar, "absmax_q8");
  check_weight(absmax_s2, at::kFloat, "absmax_s2");
  const int64_t N = q.size(0), K = q.size(1) * 2;
  TORCH_CHECK(K % 64 == 0, "zerollm gemv_nf4: in_features must be a multiple of 64, got ", K);
  TORCH_CHECK(levels.numel() == 16, "zerollm gemv_nf4: 16 levels expected");
  int8_t lut[16];
  for (int i = 0; i < 16; ++i) lut[i] = static_cast<int8_t>(std::nearbyint(127.f * levels.data_ptr<float>()[i]));
  QCtx ctx{Kind::NF4, nullptr, q.data_ptr<uint8_t>(), nullptr, nullptr, lut, absmax_q8.data_ptr<int8_t>(),
           absmax_s2.data_ptr<float>(), static_cast<float>(absmax_mean), bias_ptr(bias, N), nullptr, 0, 0, 64};
  return run_quant(ctx, x, N, K);
}

bool has_avx2() {
#ifdef ZLLM_AVX2
  return true;
#else
  return false;
#endif
}

}  // namespace zerollm

TORCH_LIBRARY(zerollm_kernels, m) {
  m.def("gemv_f32(Tensor x, Tensor w, Tensor? bias=None) -> Tensor");
  m.def("gemv_int8(Tensor x, Tensor q, Tensor scales, Tensor? bias=None) -> Tensor");
  m.def("gemv_int4(Tensor x, Tensor q, Tensor scales, Tensor? mins, int group, Tensor? bias=None) -> Tensor");
  m.def("gemv_nf4(Tensor x, Tensor q, Tensor levels, Tensor absmax_q8, Tensor absmax_s2, float absmax_mean, "
        "Tensor? bias=None) -> Tensor");
  m.def("has_avx2() -> bool", &zerollm::has_avx2);
}

TORCH_LIBRARY_IMPL(zerollm_kernels, CPU, m) {
  m.impl("gemv_f32", &zerollm::gemv_f32);
  m.impl("gemv_int8", &zerollm::gemv_int8);
  m.impl("gemv_int4", &zerollm::gemv_int4);
  m.impl("gemv_nf4", &zerollm::gemv_nf4);
}

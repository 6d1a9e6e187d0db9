// Fused SLB weight kernels for MindSpore ops.Custom(func_type="aot") on CPU.
//
// Logits are candidate-major: a[K, N] (N = product of the weight shape), so each
// candidate's logits form one contiguous stream. Candidate values are fixed by K:
// v_k = -1 + 2k / (K - 1) (K = 2 gives {-1, +1}).
//
//   soft:  p = softmax(T * a, axis 0),  w = sum_k p_k v_k,
//          dL/da_k = g * T * p_k * (v_k - w)
//   hard:  w = v[argmax_k a_k] (first maximum), no gradient.
//
// Work is done in blocks of kBlock weights: the K rows of a block stay in L1/L2,
// so the max pass and the exp pass read main memory once. The inner loops run
// over the weight index and vectorise; large layers split their blocks across threads.
// The backward pass recomputes the softmax instead of reading stored
// probabilities, so the forward pass keeps nothing but w.
//
// Tensors may be float32 or float16 (mixed precision hands the op float16): the
// kernels compute in float32, so float16 inputs are widened into a float32 copy
// and float16 outputs narrowed from one.

#include <sched.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <system_error>
#include <thread>
#include <vector>

namespace {

constexpr int64_t kBlock = 512;

// Logits (K * N) below which one thread does the call: starting threads costs more than it
// saves on the small layers of narrow networks. Set by the Python side (PARALLEL_MIN_LOGITS).
constexpr int64_t kParallelMinLogits = SLB_PARALLEL_MIN_LOGITS;

// Computed in double as NumPy's linspace does, then rounded: the hard weights are
// then bit-identical to np.linspace(-1, 1, K).astype(np.float32).
inline float candidate_value(int64_t k, int64_t K) {
  return static_cast<float>(-1.0 + static_cast<double>(k) * (2.0 / static_cast<double>(K - 1)));
}

// 2^y for y <= 0, written out so that GCC vectorises it without -ffast-math
// (glibc's vector expf is only declared under __FAST_MATH__, and -ffast-math on a
// shared library links crtfastmath.o, which turns on flush-to-zero for the whole
// MindSpore process). Callers fold log2(e) into the temperature, so exp costs no
// extra multiply and the range reduction y - round(y) is exact.
inline float exp2_nonpositive(float y) {
  // Below -126, 2^n would leave the normal range; 2^-126 ~ 1.2e-38 is already
  // negligible next to the largest term, which is 2^0 = 1.
  y = y < -126.0f ? -126.0f : y;
  const float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float n = (y + kRound) - kRound;
  const float t = (y - n) * 0.693147181f;  // 2^(y - n) = e^t, |t| <= ln(2) / 2
  // Taylor series of e^t to degree 6: truncation error < 1.3e-7 for |t| <= ln(2) / 2.
  float p = 1.0f / 720.0f;
  p = p * t + 1.0f / 120.0f;
  p = p * t + 1.0f / 24.0f;
  p = p * t + 1.0f / 6.0f;
  p = p * t + 0.5f;
  p = p * t + 1.0f;
  p = p * t + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;  // 2^n
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

constexpr float kLog2e = 1.44269504f;

// Per-block softmax state: row maximum, sum of exp and exp-weighted value sum.
struct SoftmaxBlock {
  float max[kBlock];
  float sum[kBlock];
  float weighted[kBlock];

  // Fills the state for a[:, b0:b0+len]. When e_out is given, the exponentials
  // are also stored there (same layout as a) for the backward pass. The test on
  // e_out is loop-invariant: GCC unswitches it and vectorises both versions.
  void compute(const float *a, int64_t K, int64_t N, int64_t b0, int64_t len, float T, float *e_out) {
    const float T2 = T * kLog2e;
    const float *row0 = a + b0;
    for (int64_t i = 0; i < len; ++i) max[i] = row0[i];
    for (int64_t k = 1; k < K; ++k) {
      const float *row = a + k * N + b0;
      for (int64_t i = 0; i < len; ++i) max[i] = row[i] > max[i] ? row[i] : max[i];
    }
    for (int64_t i = 0; i < len; ++i) sum[i] = weighted[i] = 0.0f;
    for (int64_t k = 0; k < K; ++k) {
      const float *row = a + k * N + b0;
      const float v = candidate_value(k, K);
      float *e_row = e_out ? e_out + k * N + b0 : nullptr;
      for (int64_t i = 0; i < len; ++i) {
        // T * (a - max) rather than T * a - T * max: no overflow of T * a, and
        // the subtraction is exact for close logits.
        const float e = exp2_nonpositive(T2 * (row[i] - max[i]));
        sum[i] += e;
        weighted[i] += e * v;
        if (e_row) e_row[i] = e;
      }
    }
  }
};

// The CPUs this process may run on: the threads a large call is split across.
int64_t available_cpus() {
  static const int64_t count = [] {
    cpu_set_t set;
    return sched_getaffinity(0, sizeof set, &set) == 0 ? std::max(1, CPU_COUNT(&set)) : 1;
  }();
  return count;
}

// The threads a call on logits [K, N] is split across: one for a small layer, else up to
// available_cpus(). Threads are started per call rather than taken from OpenMP: libgomp's idle
// workers spin between parallel regions (its wait policy is read once, when MindSpore loads it),
// and on a small machine that spinning took the cores from MindSpore's own threads and the data
// pipeline. A thread that has finished costs nothing until the next call.
int64_t threads_for(int64_t K, int64_t N) {
  const int64_t blocks = (N + kBlock - 1) / kBlock;
  return K * N >= kParallelMinLogits ? std::max<int64_t>(1, std::min(available_cpus(), blocks)) : 1;
}

// A layer's weights: logits a[K, N], temperature T, and an optional per-channel scale s
// (nullptr: 1) for channels of `inner` weights. Multiplying by a scale of 1 is exact, so the
// unscaled kernels give the same bits as before the scale existed.
struct Layer {
  const float *a;
  int64_t K, N;
  float T;
  const float *s;
  int64_t inner;

  float scale_of(int64_t c) const { return s ? s[c] : 1.0f; }
};

// Calls block(b0, len, c) over the weights [0, N) of layer L, on blocks of at most kBlock
// weights that never cross a channel boundary, c being the block's channel (of L.inner weights;
// an unscaled layer is one channel). Runs on the calling thread alone for a small layer, else
// split across threads: an unscaled layer in whole blocks, a scaled one in whole channels, so
// that each channel's sum for the scale's gradient is made by one thread, in order (split
// inside a channel, two threads would add into ds[c] at once and lose one of the sums).
template <typename Block>
void for_blocks(const Layer &L, const Block &block) {
  const int64_t K = L.K, N = L.N, inner = L.inner;
  const int64_t unit = L.s ? inner : kBlock;
  const int64_t units = (N + unit - 1) / unit;
  const int64_t threads = std::min(threads_for(K, N), units);
  const int64_t per_thread = (units + threads - 1) / threads * unit;
  auto range = [&block, N, inner](int64_t begin, int64_t end) {
    for (int64_t b0 = begin; b0 < end;) {
      const int64_t c = b0 / inner;
      const int64_t len = std::min({kBlock, end - b0, (c + 1) * inner - b0});
      block(b0, len, c);
      b0 += len;
    }
  };
  std::vector<std::thread> helpers;
  for (int64_t begin = per_thread; begin < N; begin += per_thread) {
    const int64_t end = std::min(N, begin + per_thread);
    try {
      helpers.emplace_back([&range, begin, end] { range(begin, end); });
    } catch (const std::system_error &) {  // no thread to be had: do that range here
      range(begin, end);
    }
  }
  range(0, std::min(N, per_thread));
  for (std::thread &helper : helpers) helper.join();
}

// sum_i x[i] y[i] in 16 independent partial sums, so that it vectorises without -ffast-math.
float dot(const float *x, const float *y, int64_t n) {
  constexpr int kLanes = 16;
  float lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) lanes[j] += x[i + j] * y[i + j];
  }
  float total = 0.0f;
  for (; i < n; ++i) total += x[i] * y[i];
  for (int j = 0; j < kLanes; ++j) total += lanes[j];
  return total;
}

// K = 2: v = tanh(T d / 2) with d = a1 - a0, from e = exp(-T |d|) so nothing overflows.
inline float two_candidate_value(float d, float e) {
  const float t = (1.0f - e) / (1.0f + e);
  return d < 0.0f ? -t : t;
}

void soft_forward(const Layer &L, float *w) {
  const float *a = L.a;
  const int64_t K = L.K, N = L.N;
  const float T = L.T, T2 = L.T * kLog2e;
  if (K == 2) {
    for_blocks(L, [=, &L](int64_t b0, int64_t len, int64_t c) {
      const float s = L.scale_of(c);
      for (int64_t i = b0; i < b0 + len; ++i) {
        const float d = a[N + i] - a[i];
        w[i] = s * two_candidate_value(d, exp2_nonpositive(-T2 * std::fabs(d)));
      }
    });
    return;
  }
  for_blocks(L, [=, &L](int64_t b0, int64_t len, int64_t c) {
    SoftmaxBlock blk;
    const float s = L.scale_of(c);
    blk.compute(a, K, N, b0, len, T, nullptr);
    for (int64_t i = 0; i < len; ++i) w[b0 + i] = s * (blk.weighted[i] / blk.sum[i]);
  });
}

// Logits' gradient da for upstream gradient g of the scaled weight (the unscaled kernel's for
// g * s) and, when ds is given, ds[c] = sum over channel c of g * v(a).
void soft_backward(const Layer &L, const float *g, float *da, float *ds) {
  const float *a = L.a;
  const int64_t K = L.K, N = L.N;
  const float T = L.T, T2 = L.T * kLog2e;
  if (K == 2) {
    // dv/da1 = T p0 p1 (v1 - v0) = 2 T e / (1 + e)^2; da0 = -da1.
    for_blocks(L, [=, &L](int64_t b0, int64_t len, int64_t c) {
      const float s2T = 2.0f * T * L.scale_of(c);
      float v[kBlock];
      for (int64_t i = 0; i < len; ++i) {
        const float d = a[N + b0 + i] - a[b0 + i];
        const float e = exp2_nonpositive(-T2 * std::fabs(d));
        const float q = 1.0f + e;
        const float d1 = s2T * g[b0 + i] * e / (q * q);
        da[b0 + i] = -d1;
        da[N + b0 + i] = d1;
        v[i] = two_candidate_value(d, e);
      }
      if (ds) ds[c] += dot(g + b0, v, len);
    });
    return;
  }
  for_blocks(L, [=, &L](int64_t b0, int64_t len, int64_t c) {
    SoftmaxBlock blk;
    float factor[kBlock];
    const float sT = L.scale_of(c) * T;
    blk.compute(a, K, N, b0, len, T, da);  // da holds exp(T (a - max)) for now
    for (int64_t i = 0; i < len; ++i) {
      blk.weighted[i] /= blk.sum[i];  // now v
      factor[i] = g[b0 + i] * sT / blk.sum[i];
    }
    for (int64_t k = 0; k < K; ++k) {
      const float v = candidate_value(k, K);
      float *row = da + k * N + b0;
      for (int64_t i = 0; i < len; ++i) row[i] *= factor[i] * (v - blk.weighted[i]);
    }
    if (ds) ds[c] += dot(g + b0, blk.weighted, len);
  });
}

// v[argmax_k a_k] (the first maximum, as argmax) for weights [b0, b0 + len).
void hard_block(const float *a, int64_t K, int64_t N, int64_t b0, int64_t len, float *out) {
  float best[kBlock];
  for (int64_t i = 0; i < len; ++i) {
    best[i] = a[b0 + i];
    out[i] = candidate_value(0, K);
  }
  for (int64_t k = 1; k < K; ++k) {
    const float *row = a + k * N + b0;
    const float v = candidate_value(k, K);
    // Strictly greater: ties keep the first maximum.
    for (int64_t i = 0; i < len; ++i) {
      const bool better = row[i] > best[i];
      best[i] = better ? row[i] : best[i];
      out[i] = better ? v : out[i];
    }
  }
}

void hard_forward(const Layer &L, float *w) {
  for_blocks(L, [=, &L](int64_t b0, int64_t len, int64_t c) {
    hard_block(L.a, L.K, L.N, b0, len, w + b0);
    const float s = L.scale_of(c);
    for (int64_t i = b0; i < b0 + len; ++i) w[i] *= s;
  });
}

// The hard weight has no logits' gradient; its scale's is ds[c] = sum over channel c of g * v.
void hard_backward(const Layer &L, const float *g, float *da, float *ds) {
  std::memset(da, 0, sizeof(float) * L.K * L.N);
  if (!ds) return;
  for_blocks(L, [=, &L](int64_t b0, int64_t len, int64_t c) {
    float v[kBlock];
    hard_block(L.a, L.K, L.N, b0, len, v);
    ds[c] += dot(g + b0, v, len);
  });
}

bool is_float16(const char *dtype) { return std::strcmp(dtype, "float16") == 0; }

bool all_floating(int nparam, const char **dtypes) {
  for (int i = 0; i < nparam; ++i) {
    if (std::strcmp(dtypes[i], "float32") != 0 && !is_float16(dtypes[i])) return false;
  }
  return true;
}

float read_scalar(const void *data, const char *dtype) {
  return is_float16(dtype) ? static_cast<float>(*static_cast<const _Float16 *>(data))
                           : *static_cast<const float *>(data);
}

// A float32 view of an op's tensor of n elements: the tensor itself when it is
// float32, else a widened copy (an input) or scratch space (an output) that
// narrow_into_tensor() writes back.
class Float32View {
 public:
  Float32View(void *tensor, const char *dtype, int64_t n, bool is_input)
      : tensor_(tensor), half_(is_float16(dtype)), n_(n) {
    if (!half_) {
      data_ = static_cast<float *>(tensor);
      return;
    }
    copy_.resize(static_cast<size_t>(n));
    data_ = copy_.data();
    if (is_input) {
      const _Float16 *source = static_cast<const _Float16 *>(tensor);
      for (int64_t i = 0; i < n; ++i) data_[i] = static_cast<float>(source[i]);
    }
  }
  float *data() { return data_; }
  void narrow_into_tensor() {
    if (!half_) return;
    _Float16 *target = static_cast<_Float16 *>(tensor_);
    for (int64_t i = 0; i < n_; ++i) target[i] = static_cast<_Float16>(data_[i]);
  }

 private:
  void *tensor_;
  bool half_;
  int64_t n_;
  std::vector<float> copy_;
  float *data_;
};

// K from the leading axis of the logits, N from the rest.
bool logits_extent(int ndim, const int64_t *shape, int64_t *K, int64_t *N) {
  if (ndim < 1 || shape[0] < 2) return false;
  *K = shape[0];
  *N = 1;
  for (int d = 1; d < ndim; ++d) *N *= shape[d];
  return true;
}

// The (scaled) weight s v(a): the argmax candidate (hard) or the softmax mean (soft).
void weight_of(const Layer &L, bool hard, float *w) {
  if (hard) {
    hard_forward(L, w);
  } else {
    soft_forward(L, w);
  }
}

// The logits' gradient for upstream gradient g of s v(a), and the scale's into ds when given.
void logits_gradient(const Layer &L, bool hard, const float *g, float *da, float *ds) {
  if (ds) std::memset(ds, 0, sizeof(float) * (L.N / L.inner));
  if (hard) {
    hard_backward(L, g, da, ds);
  } else {
    soft_backward(L, g, da, ds);
  }
}

// Checks what every entry point shares (count and dtypes of its tensors, the logits' shape) and
// reads K, N, the temperature and the hard flag, the first three inputs.
bool read_common(int nparam, int expected, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                 int64_t *K, int64_t *N, float *T, bool *hard) {
  if (nparam != expected || !all_floating(nparam, dtypes) || !logits_extent(ndims[0], shapes[0], K, N)) {
    return false;
  }
  *T = read_scalar(params[1], dtypes[1]);
  *hard = read_scalar(params[2], dtypes[2]) > 0.5f;
  return true;
}

// Whether input `index` is a scale [C] for logits [K, C, ...].
bool scale_fits(int *ndims, int64_t **shapes, int index) {
  return ndims[0] >= 2 && ndims[index] == 1 && shapes[index][0] == shapes[0][1];
}

}  // namespace

// Inputs: logits [K, ...], temperature [1], hard flag [1] (> 0.5: hard). Output: w [...].
extern "C" int SlbSoftWeightForward(int nparam, void **params, int *ndims, int64_t **shapes,
                                    const char **dtypes, void *, void *) {
  int64_t K, N;
  float T;
  bool hard;
  if (!read_common(nparam, 4, params, ndims, shapes, dtypes, &K, &N, &T, &hard)) return 1;
  Float32View a(params[0], dtypes[0], K * N, true);
  Float32View w(params[3], dtypes[3], N, false);
  weight_of(Layer{a.data(), K, N, T, nullptr, N}, hard, w.data());
  w.narrow_into_tensor();
  return 0;
}

// Inputs: logits [K, ...], temperature [1], hard flag [1], dout [...]. Output: dlogits [K, ...].
extern "C" int SlbSoftWeightBackward(int nparam, void **params, int *ndims, int64_t **shapes,
                                     const char **dtypes, void *, void *) {
  int64_t K, N;
  float T;
  bool hard;
  if (!read_common(nparam, 5, params, ndims, shapes, dtypes, &K, &N, &T, &hard)) return 1;
  Float32View a(params[0], dtypes[0], K * N, true);
  Float32View g(params[3], dtypes[3], N, true);
  Float32View da(params[4], dtypes[4], K * N, false);
  logits_gradient(Layer{a.data(), K, N, T, nullptr, N}, hard, g.data(), da.data(), nullptr);
  da.narrow_into_tensor();
  return 0;
}

// Scaled weight: w = s[c] * v(a) for the weights of output channel c (axis 0 of the weight,
// N / C weights each), folded into the passes above: no extra pass over the weights and, in
// MindSpore's graph, no multiply whose buffers the memory planner keeps (+0.39 GB peak for
// ResNet18 width 64 in GRAPH mode) and no op pair per layer to compile.
// Inputs: logits [K, C, ...], temperature [1], hard flag [1], scale [C]. Output: w [C, ...].
extern "C" int SlbScaledWeightForward(int nparam, void **params, int *ndims, int64_t **shapes,
                                      const char **dtypes, void *, void *) {
  int64_t K, N;
  float T;
  bool hard;
  if (!read_common(nparam, 5, params, ndims, shapes, dtypes, &K, &N, &T, &hard) || !scale_fits(ndims, shapes, 3)) {
    return 1;
  }
  const int64_t C = shapes[3][0];
  Float32View a(params[0], dtypes[0], K * N, true);
  Float32View scale(params[3], dtypes[3], C, true);
  Float32View w(params[4], dtypes[4], N, false);
  weight_of(Layer{a.data(), K, N, T, scale.data(), N / C}, hard, w.data());
  w.narrow_into_tensor();
  return 0;
}

// Inputs: logits [K, C, ...], temperature [1], hard flag [1], scale [C], dout [C, ...].
// Outputs: dlogits [K, C, ...] (the unscaled kernel's, for dout * s) and dscale [C], the sum
// over each channel of dout * v(a).
extern "C" int SlbScaledWeightBackward(int nparam, void **params, int *ndims, int64_t **shapes,
                                       const char **dtypes, void *, void *) {
  int64_t K, N;
  float T;
  bool hard;
  if (!read_common(nparam, 7, params, ndims, shapes, dtypes, &K, &N, &T, &hard) || !scale_fits(ndims, shapes, 3)) {
    return 1;
  }
  const int64_t C = shapes[3][0];
  Float32View a(params[0], dtypes[0], K * N, true);
  Float32View scale(params[3], dtypes[3], C, true);
  Float32View g(params[4], dtypes[4], N, true);
  Float32View da(params[5], dtypes[5], K * N, false);
  Float32View ds(params[6], dtypes[6], C, false);
  logits_gradient(Layer{a.data(), K, N, T, scale.data(), N / C}, hard, g.data(), da.data(), ds.data());
  da.narrow_into_tensor();
  ds.narrow_into_tensor();
  return 0;
}

// The number of threads a call on logits [K, N] uses (for tests and diagnostics).
extern "C" int64_t SlbThreadsFor(int64_t K, int64_t N) { return threads_for(K, N); }

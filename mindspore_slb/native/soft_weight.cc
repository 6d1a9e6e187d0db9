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
// The kernels compute in float32. Logits may be stored in float32, float16 (mixed precision
// hands the op float16) or bfloat16 (the half-precision search state): a block's rows are
// widened into a per-thread scratch as it is worked on. Other float16 tensors are widened into
// a float32 copy and float16 outputs narrowed from one. The fused update writes bfloat16 logits
// and momentum back with stochastic rounding, so that steps far below bfloat16's resolution
// still move them on average.

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

// How a tensor's floats are stored.
enum class Storage { kFloat32, kFloat16, kBFloat16, kOther };

Storage storage_of(const char *dtype) {
  if (std::strcmp(dtype, "float32") == 0) return Storage::kFloat32;
  if (std::strcmp(dtype, "float16") == 0) return Storage::kFloat16;
  if (std::strcmp(dtype, "bfloat16") == 0) return Storage::kBFloat16;
  return Storage::kOther;
}

inline float from_bfloat16(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// A well-mixed 32-bit hash (lowbias32): the random bits of stochastic rounding.
inline uint32_t mix(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  x ^= x >> 16;
  return x;
}

// f rounded to bfloat16 up or down with probabilities that make the rounding unbiased: 16 random
// bits added below bfloat16's last bit, then truncated. The bits are a hash of the value and
// `salt` (the element's index and the optimizer's step), so a run is reproducible.
inline uint16_t to_bfloat16_stochastic(float f, uint32_t salt) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  bits += mix(bits ^ salt) & 0xffffu;
  return static_cast<uint16_t>(bits >> 16);
}

// Logits [K, N] as stored. rows(b0, len) gives a block's K rows as float32: the storage itself for
// float32 (stride N), else a per-thread scratch of K x kBlock floats the rows are widened into.
struct Logits {
  void *data;
  Storage type;
  int64_t K, N;

  struct Rows {
    float *p;
    int64_t stride;
  };

  Rows rows(int64_t b0, int64_t len) const {
    if (type == Storage::kFloat32) return {static_cast<float *>(data) + b0, N};
    thread_local std::vector<float> scratch;
    scratch.resize(static_cast<size_t>(K * kBlock));
    for (int64_t k = 0; k < K; ++k) widen(k * N + b0, len, scratch.data() + k * kBlock);
    return {scratch.data(), kBlock};
  }

  void widen(int64_t start, int64_t len, float *out) const {
    if (type == Storage::kFloat16) {
      const _Float16 *h = static_cast<const _Float16 *>(data) + start;
      for (int64_t i = 0; i < len; ++i) out[i] = static_cast<float>(h[i]);
    } else {
      const uint16_t *h = static_cast<const uint16_t *>(data) + start;
      for (int64_t i = 0; i < len; ++i) out[i] = from_bfloat16(h[i]);
    }
  }
};

// Per-block softmax state: row maximum, sum of exp and exp-weighted value sum.
struct SoftmaxBlock {
  float max[kBlock];
  float sum[kBlock];
  float weighted[kBlock];

  // Fills the state for a block's K rows of len logits, candidate k's at rows + k * stride.
  // When e_out is given, the exponentials are also stored there for the backward pass,
  // candidate k's at e_out + k * e_stride. The test on e_out is loop-invariant: GCC unswitches
  // it and vectorises both versions.
  void compute(const float *rows, int64_t stride, int64_t K, int64_t len, float T, float *e_out, int64_t e_stride) {
    const float T2 = T * kLog2e;
    for (int64_t i = 0; i < len; ++i) max[i] = rows[i];
    for (int64_t k = 1; k < K; ++k) {
      const float *row = rows + k * stride;
      for (int64_t i = 0; i < len; ++i) max[i] = row[i] > max[i] ? row[i] : max[i];
    }
    for (int64_t i = 0; i < len; ++i) sum[i] = weighted[i] = 0.0f;
    for (int64_t k = 0; k < K; ++k) {
      const float *row = rows + k * stride;
      const float v = candidate_value(k, K);
      float *e_row = e_out ? e_out + k * e_stride : nullptr;
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
  Logits a;  // K and N are the logits'
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
  const int64_t K = L.a.K, N = L.a.N, inner = L.inner;
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
  const int64_t K = L.a.K;
  const float T = L.T, T2 = L.T * kLog2e;
  if (K == 2) {
    for_blocks(L, [=, &L](int64_t b0, int64_t len, int64_t c) {
      const float s = L.scale_of(c);
      const Logits::Rows a = L.a.rows(b0, len);
      for (int64_t i = 0; i < len; ++i) {
        const float d = a.p[a.stride + i] - a.p[i];
        w[b0 + i] = s * two_candidate_value(d, exp2_nonpositive(-T2 * std::fabs(d)));
      }
    });
    return;
  }
  for_blocks(L, [=, &L](int64_t b0, int64_t len, int64_t c) {
    SoftmaxBlock blk;
    const float s = L.scale_of(c);
    const Logits::Rows a = L.a.rows(b0, len);
    blk.compute(a.p, a.stride, K, len, T, nullptr, 0);
    for (int64_t i = 0; i < len; ++i) w[b0 + i] = s * (blk.weighted[i] / blk.sum[i]);
  });
}

// A block's logits' gradient as the backward pass hands it over: row(k) is candidate k's gradient as
// a function of the weight's index in the block, which a sink reads once, where it needs it.

// Rows the backward pass wrote out in full (K = 2), candidate k's at rows + k * stride.
struct StoredGradient {
  const float *rows;
  int64_t stride;
  auto row(int64_t k) const {
    const float *r = rows + k * stride;
    return [r](int64_t i) { return r[i]; };
  }
};

// The softmax's gradient, e_k * factor * (v_k - w), from its exponentials e (candidate k's at
// e + k * stride), the per-weight factor g * s * T / sum and soft weight w. Left unmultiplied until
// read, so that the fused update spends no pass over the block on it.
struct SoftmaxGradient {
  const float *e;
  int64_t stride;
  const float *factor, *w;
  int64_t K;
  auto row(int64_t k) const {
    const float *r = e + k * stride, *f = factor, *soft = w;
    const float v = candidate_value(k, K);
    return [r, f, soft, v](int64_t i) { return r[i] * (f[i] * (v - soft[i])); };
  }
};

// The hard weight's: zero.
struct NoGradient {
  auto row(int64_t) const {
    return [](int64_t) { return 0.0f; };
  }
};

// Where the logits' gradient of a block goes. The backward pass computes it block by block: rows(b0)
// is scratch for candidate k's values over weights [b0, b0 + len) (at k * stride), and done() is called
// once the block's gradient is complete, with the block's logits as float32 rows.

// The plain backward pass: the gradient is the op's output da [K, N], and rows(b0) are da's own.
struct GradientOutput {
  float *da;
  int64_t K, N;
  int64_t stride() const { return N; }
  float *rows(int64_t b0) const { return da + b0; }
  void done(int64_t, int64_t, const Logits::Rows &, const StoredGradient &) const {}  // already in da
  void done(int64_t b0, int64_t len, const Logits::Rows &, const SoftmaxGradient &gradient) const {
    for (int64_t k = 0; k < K; ++k) {  // the exponentials were written to da: finished in place
      const auto value = gradient.row(k);
      float *row = da + k * N + b0;
      for (int64_t i = 0; i < len; ++i) row[i] = value(i);
    }
  }
  void done(int64_t b0, int64_t len, const Logits::Rows &, const NoGradient &) const {
    for (int64_t k = 0; k < K; ++k) std::memset(da + k * N + b0, 0, sizeof(float) * len);
  }
};

// nn.Momentum's step for one parameter, in its order of operations: the gradient with weight decay,
// g' = (g + a * decay) * grad_scale (MindSpore multiplies the decay by the loss scale and the sum
// by its reciprocal), then m = m * momentum + g' and a -= lr * m.
struct MomentumStep {
  float lr, momentum, decay, grad_scale;
  uint32_t step;  // the optimizer's step counter: a new draw of stochastic rounding each step

  // gradient(i): the gradient of a[i] (zero for the hard weight, which still decays and carries momentum).
  template <typename Gradient>
  void apply(float *a, float *m, const Gradient &gradient, int64_t len) const {
    for (int64_t i = 0; i < len; ++i) {
      const float grad = (a[i] * decay + gradient(i)) * grad_scale;
      m[i] = m[i] * momentum + grad;
      a[i] -= lr * m[i];
    }
  }
};

// The fused update: each block's gradient is read where it is made (the per-thread scratch of K x kBlock
// floats holds at most its exponentials) and applied to the logits and their momentum m (both [K, N],
// float32 or bfloat16 alike) at once, so no [K, N] gradient is ever written. A block reads its logits
// before it updates them, and blocks do not overlap. Float32 logits and momentum are updated where
// they are stored; bfloat16 ones in float32 rows, written back with stochastic rounding.
struct MomentumUpdate {
  Logits logits;
  void *m;
  MomentumStep step;
  int64_t stride() const { return kBlock; }
  float *rows(int64_t) const {
    thread_local std::vector<float> scratch;
    scratch.resize(static_cast<size_t>(logits.K * kBlock));
    return scratch.data();
  }
  template <typename Gradient>
  void done(int64_t b0, int64_t len, const Logits::Rows &a, const Gradient &gradient) const {
    for (int64_t k = 0; k < logits.K; ++k) row_step(k, b0, len, a, gradient.row(k));
  }

  template <typename RowGradient>
  void row_step(int64_t k, int64_t b0, int64_t len, const Logits::Rows &a, const RowGradient &g) const {
    const int64_t start = k * logits.N + b0;
    float *a_row = a.p + k * a.stride;
    if (logits.type == Storage::kFloat32) {
      step.apply(a_row, static_cast<float *>(m) + start, g, len);
      return;
    }
    float m_row[kBlock];
    Logits{m, Storage::kBFloat16, logits.K, logits.N}.widen(start, len, m_row);
    step.apply(a_row, m_row, g, len);
    uint16_t *a_store = static_cast<uint16_t *>(logits.data) + start;
    uint16_t *m_store = static_cast<uint16_t *>(m) + start;
    const uint32_t step_salt = mix(step.step + 0x68e31da4u);
    for (int64_t i = 0; i < len; ++i) {
      const uint32_t salt = static_cast<uint32_t>(start + i) * 0x9e3779b9u ^ step_salt;
      a_store[i] = to_bfloat16_stochastic(a_row[i], salt);
      m_store[i] = to_bfloat16_stochastic(m_row[i], salt * 0x85ebca6bu);
    }
  }
};

// Logits' gradient for upstream gradient g of the scaled weight (the unscaled kernel's for
// g * s), handed to `sink` block by block, and, when ds is given, ds[c] = sum over channel c of
// g * v(a).
template <typename Sink>
void soft_backward(const Layer &L, const float *g, const Sink &sink, float *ds) {
  const int64_t K = L.a.K;
  const float T = L.T, T2 = L.T * kLog2e;
  const int64_t stride = sink.stride();
  if (K == 2) {
    // dv/da1 = T p0 p1 (v1 - v0) = 2 T e / (1 + e)^2; da0 = -da1.
    for_blocks(L, [=, &L, &sink](int64_t b0, int64_t len, int64_t c) {
      const float s2T = 2.0f * T * L.scale_of(c);
      float v[kBlock];
      const Logits::Rows a = L.a.rows(b0, len);
      float *rows = sink.rows(b0);
      for (int64_t i = 0; i < len; ++i) {
        const float d = a.p[a.stride + i] - a.p[i];
        const float e = exp2_nonpositive(-T2 * std::fabs(d));
        const float q = 1.0f + e;
        const float d1 = s2T * g[b0 + i] * e / (q * q);
        rows[i] = -d1;
        rows[stride + i] = d1;
        v[i] = two_candidate_value(d, e);
      }
      if (ds) ds[c] += dot(g + b0, v, len);
      sink.done(b0, len, a, StoredGradient{rows, stride});
    });
    return;
  }
  for_blocks(L, [=, &L, &sink](int64_t b0, int64_t len, int64_t c) {
    SoftmaxBlock blk;
    float factor[kBlock];
    const float sT = L.scale_of(c) * T;
    const Logits::Rows a = L.a.rows(b0, len);
    float *rows = sink.rows(b0);
    blk.compute(a.p, a.stride, K, len, T, rows, stride);  // rows: exp(T (a - max)), the gradient's e
    for (int64_t i = 0; i < len; ++i) {
      blk.weighted[i] /= blk.sum[i];  // now v
      factor[i] = g[b0 + i] * sT / blk.sum[i];
    }
    if (ds) ds[c] += dot(g + b0, blk.weighted, len);
    sink.done(b0, len, a, SoftmaxGradient{rows, stride, factor, blk.weighted, K});
  });
}

// v[argmax_k a_k] (the first maximum, as argmax) for a block's rows of len logits.
void hard_block(const Logits::Rows &a, int64_t K, int64_t len, float *out) {
  float best[kBlock];
  for (int64_t i = 0; i < len; ++i) {
    best[i] = a.p[i];
    out[i] = candidate_value(0, K);
  }
  for (int64_t k = 1; k < K; ++k) {
    const float *row = a.p + k * a.stride;
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
    hard_block(L.a.rows(b0, len), L.a.K, len, w + b0);
    const float s = L.scale_of(c);
    for (int64_t i = b0; i < b0 + len; ++i) w[i] *= s;
  });
}

// The hard weight has no logits' gradient; its scale's is ds[c] = sum over channel c of g * v.
template <typename Sink>
void hard_backward(const Layer &L, const float *g, const Sink &sink, float *ds) {
  for_blocks(L, [=, &L, &sink](int64_t b0, int64_t len, int64_t c) {
    const Logits::Rows a = L.a.rows(b0, len);
    if (ds) {
      float v[kBlock];
      hard_block(a, L.a.K, len, v);
      ds[c] += dot(g + b0, v, len);
    }
    sink.done(b0, len, a, NoGradient{});
  });
}

// A tensor other than the logits and their momentum: float32, or float16 under mixed precision.
bool is_plain_float(const char *dtype) {
  const Storage type = storage_of(dtype);
  return type == Storage::kFloat32 || type == Storage::kFloat16;
}

float read_scalar(const void *data, const char *dtype) {
  return storage_of(dtype) == Storage::kFloat16 ? static_cast<float>(*static_cast<const _Float16 *>(data))
                                                : *static_cast<const float *>(data);
}

// A float32 view of an op's float32 or float16 tensor of n elements: the tensor itself when it
// is float32, else a widened copy (an input) or scratch space (an output) that
// narrow_into_tensor() writes back.
class Float32View {
 public:
  Float32View(void *tensor, const char *dtype, int64_t n, bool is_input)
      : tensor_(tensor), half_(storage_of(dtype) == Storage::kFloat16), n_(n) {
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

// The logits' gradient for upstream gradient g of s v(a), handed to `sink`, and the scale's into
// ds when given.
template <typename Sink>
void logits_gradient(const Layer &L, bool hard, const float *g, const Sink &sink, float *ds) {
  if (ds) std::memset(ds, 0, sizeof(float) * (L.a.N / L.inner));
  if (hard) {
    hard_backward(L, g, sink, ds);
  } else {
    soft_backward(L, g, sink, ds);
  }
}

// The fused update's inputs, from the logits' momentum on (read_update checks them).
constexpr int kUpdateInputs = 5;

// Checks what every entry point shares (count and dtypes of its tensors, the logits' shape) and
// reads the logits (input 0; float32, float16 or bfloat16), K, N, the temperature and the hard
// flag. Every other tensor is float32 or float16, but for the fused update's inputs from index
// `update_from` on (-1: none).
bool read_common(int nparam, int expected, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                 int update_from, Logits *logits, float *T, bool *hard) {
  int64_t K, N;
  if (nparam != expected || !logits_extent(ndims[0], shapes[0], &K, &N)) return false;
  const Storage type = storage_of(dtypes[0]);
  if (type == Storage::kOther) return false;
  for (int i = 1; i < nparam; ++i) {
    const bool update_input = update_from >= 0 && i >= update_from && i < update_from + kUpdateInputs;
    if (!update_input && !is_plain_float(dtypes[i])) return false;
  }
  *logits = Logits{params[0], type, K, N};
  *T = read_scalar(params[1], dtypes[1]);
  *hard = read_scalar(params[2], dtypes[2]) > 0.5f;
  return true;
}

// Whether input `index` is a scale [C] for logits [K, C, ...].
bool scale_fits(int *ndims, int64_t **shapes, int index) {
  return ndims[0] >= 2 && ndims[index] == 1 && shapes[index][0] == shapes[0][1];
}

}  // namespace

// Inputs: logits [K, ...], temperature [1], hard flag [1] (> 0.5: hard), and for the fused update
// the inputs its backward pass takes (see read_update), unread here. Output: w [...].
extern "C" int SlbSoftWeightForward(int nparam, void **params, int *ndims, int64_t **shapes,
                                    const char **dtypes, void *, void *) {
  Logits a;
  float T;
  bool hard;
  const bool update = nparam == 9;
  if (!read_common(nparam, update ? 9 : 4, params, ndims, shapes, dtypes, update ? 3 : -1, &a, &T, &hard)) {
    return 1;
  }
  Float32View w(params[nparam - 1], dtypes[nparam - 1], a.N, false);
  weight_of(Layer{a, T, nullptr, a.N}, hard, w.data());
  w.narrow_into_tensor();
  return 0;
}

// Inputs: logits [K, ...] (float32 or float16), temperature [1], hard flag [1], dout [...].
// Output: dlogits [K, ...].
extern "C" int SlbSoftWeightBackward(int nparam, void **params, int *ndims, int64_t **shapes,
                                     const char **dtypes, void *, void *) {
  Logits a;
  float T;
  bool hard;
  if (!read_common(nparam, 5, params, ndims, shapes, dtypes, -1, &a, &T, &hard)) return 1;
  Float32View g(params[3], dtypes[3], a.N, true);
  Float32View da(params[4], dtypes[4], a.K * a.N, false);
  logits_gradient(Layer{a, T, nullptr, a.N}, hard, g.data(), GradientOutput{da.data(), a.K, a.N}, nullptr);
  da.narrow_into_tensor();
  return 0;
}

// Scaled weight: w = s[c] * v(a) for the weights of output channel c (axis 0 of the weight,
// N / C weights each), folded into the passes above: no extra pass over the weights and, in
// MindSpore's graph, no multiply whose buffers the memory planner keeps (+0.39 GB peak for
// ResNet18 width 64 in GRAPH mode) and no op pair per layer to compile.
// Inputs: logits [K, C, ...], temperature [1], hard flag [1], scale [C], and for the fused update the
// inputs its backward pass takes, unread here. Output: w [C, ...].
extern "C" int SlbScaledWeightForward(int nparam, void **params, int *ndims, int64_t **shapes,
                                      const char **dtypes, void *, void *) {
  Logits a;
  float T;
  bool hard;
  const bool update = nparam == 10;
  if (!read_common(nparam, update ? 10 : 5, params, ndims, shapes, dtypes, update ? 4 : -1, &a, &T, &hard) ||
      !scale_fits(ndims, shapes, 3)) {
    return 1;
  }
  const int64_t C = shapes[3][0];
  Float32View scale(params[3], dtypes[3], C, true);
  Float32View w(params[nparam - 1], dtypes[nparam - 1], a.N, false);
  weight_of(Layer{a, T, scale.data(), a.N / C}, hard, w.data());
  w.narrow_into_tensor();
  return 0;
}

// Inputs: logits [K, C, ...] (float32 or float16), temperature [1], hard flag [1], scale [C],
// dout [C, ...]. Outputs: dlogits [K, C, ...] (the unscaled kernel's, for dout * s) and dscale [C],
// the sum over each channel of dout * v(a).
extern "C" int SlbScaledWeightBackward(int nparam, void **params, int *ndims, int64_t **shapes,
                                       const char **dtypes, void *, void *) {
  Logits a;
  float T;
  bool hard;
  if (!read_common(nparam, 7, params, ndims, shapes, dtypes, -1, &a, &T, &hard) || !scale_fits(ndims, shapes, 3)) {
    return 1;
  }
  const int64_t C = shapes[3][0];
  Float32View scale(params[3], dtypes[3], C, true);
  Float32View g(params[4], dtypes[4], a.N, true);
  Float32View da(params[5], dtypes[5], a.K * a.N, false);
  Float32View ds(params[6], dtypes[6], C, false);
  logits_gradient(Layer{a, T, scale.data(), a.N / C}, hard, g.data(), GradientOutput{da.data(), a.K, a.N},
                  ds.data());
  da.narrow_into_tensor();
  ds.narrow_into_tensor();
  return 0;
}

// The fused update's inputs after the backward's (kUpdateInputs, from index `moment`): the logits'
// momentum [K, ...], stored as the logits are, in float32 or bfloat16 (both are updated in place,
// and a widened copy would take the update); the optimizer's learning rate, float32, one value or
// one per step; its step counter, int32 [1]; its momentum, float32; and the layer's float32 [2]:
// weight decay times the loss scale (as nn.Momentum keeps it) and the gradient scale (1 / loss
// scale). The learning rate is read as nn.Optimizer reads it, the per-step value at the step
// counter (the last one past the end).
bool read_update(void **params, int *ndims, int64_t **shapes, const char **dtypes, int moment, const Logits &a,
                 MomentumUpdate *update) {
  const int rates = moment + 1, step = moment + 2, momentum = moment + 3, layer = moment + 4;
  const bool stored = (a.type == Storage::kFloat32 || a.type == Storage::kBFloat16) &&
                      storage_of(dtypes[moment]) == a.type && ndims[moment] == ndims[0] &&
                      std::equal(shapes[0], shapes[0] + ndims[0], shapes[moment]);
  int64_t rate_count = 1;
  for (int d = 0; d < ndims[rates]; ++d) rate_count *= shapes[rates][d];
  if (!stored || storage_of(dtypes[rates]) != Storage::kFloat32 || ndims[rates] > 1 || rate_count < 1 ||
      std::strcmp(dtypes[step], "int32") != 0 || storage_of(dtypes[momentum]) != Storage::kFloat32 ||
      storage_of(dtypes[layer]) != Storage::kFloat32 || ndims[layer] != 1 || shapes[layer][0] != 2) {
    return false;
  }
  const int32_t counter = *static_cast<const int32_t *>(params[step]);
  const int64_t index = std::min<int64_t>(std::max<int32_t>(counter, 0), rate_count - 1);
  const float lr = static_cast<const float *>(params[rates])[index];
  const float *own = static_cast<const float *>(params[layer]);
  *update = MomentumUpdate{a, params[moment],
                           MomentumStep{lr, *static_cast<const float *>(params[momentum]), own[0], own[1],
                                        static_cast<uint32_t>(counter)}};
  return true;
}

// The backward pass with the logits' optimizer step fused into it (MomentumUpdate).
// Inputs: logits [K, ...], temperature [1], hard flag [1], dout [...], then read_update's five.
// Output: a one-element token (0) standing for the logits' gradient; logits and momentum are updated.
extern "C" int SlbSoftWeightBackwardUpdate(int nparam, void **params, int *ndims, int64_t **shapes,
                                           const char **dtypes, void *, void *) {
  Logits a;
  float T;
  bool hard;
  MomentumUpdate update;
  if (!read_common(nparam, 10, params, ndims, shapes, dtypes, 4, &a, &T, &hard) ||
      !read_update(params, ndims, shapes, dtypes, 4, a, &update)) {
    return 1;
  }
  Float32View g(params[3], dtypes[3], a.N, true);
  logits_gradient(Layer{a, T, nullptr, a.N}, hard, g.data(), update, nullptr);
  *static_cast<float *>(params[9]) = 0.0f;  // the token (float32)
  return 0;
}

// The scaled weight's backward pass with the logits' step fused into it.
// Inputs: logits [K, C, ...], temperature [1], hard flag [1], scale [C], dout [C, ...],
// then read_update's five. Outputs: the token [1] and dscale [C].
extern "C" int SlbScaledWeightBackwardUpdate(int nparam, void **params, int *ndims, int64_t **shapes,
                                             const char **dtypes, void *, void *) {
  Logits a;
  float T;
  bool hard;
  MomentumUpdate update;
  if (!read_common(nparam, 12, params, ndims, shapes, dtypes, 5, &a, &T, &hard) || !scale_fits(ndims, shapes, 3) ||
      !read_update(params, ndims, shapes, dtypes, 5, a, &update)) {
    return 1;
  }
  const int64_t C = shapes[3][0];
  Float32View scale(params[3], dtypes[3], C, true);
  Float32View g(params[4], dtypes[4], a.N, true);
  Float32View ds(params[11], dtypes[11], C, false);
  logits_gradient(Layer{a, T, scale.data(), a.N / C}, hard, g.data(), update, ds.data());
  *static_cast<float *>(params[10]) = 0.0f;  // the token (float32)
  ds.narrow_into_tensor();
  return 0;
}

// The number of threads a call on logits [K, N] uses (for tests and diagnostics).
extern "C" int64_t SlbThreadsFor(int64_t K, int64_t N) { return threads_for(K, N); }

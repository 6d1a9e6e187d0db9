"""Fused CPU kernel for SLB's weight (soft and hard), built with g++ on first use.

`soft_weight_op(K)` returns a MindSpore operator `f(logits, temperature, hard_flag) -> weight`
for candidate-major logits [K, *W] (float32), temperature and hard flag as one-element float32
tensors (hard when the flag is > 0.5). Its gradient w.r.t. the logits is a second fused
kernel; temperature and flag get zero gradients. It returns None, after one warning, where the
kernel cannot be used, and the caller falls back to plain MindSpore ops.

`soft_weight_update_op(K)` is the same weight, whose backward kernel also takes the logits'
Momentum step in place (`SlbMomentum`): its logits' "gradient" is a one-element token.
"""

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import threading

import mindspore
from mindspore import ops

__all__ = ["soft_weight_op", "soft_weight_update_op", "UPDATE_INPUTS"]

logger = logging.getLogger(__name__)

_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "soft_weight.cc")
# -march=native: the library is built on, and keyed to, the CPU that runs it.
# -mprefer-vector-width=512: GCC keeps to 256-bit vectors by default even where AVX-512
# exists; the exp-heavy loops measured 15-40% faster with 512 (no effect without AVX-512).
# No -ffast-math: the kernel's exp is written to vectorise without it, and GCC 12 links a
# -ffast-math shared library with crtfastmath.o, which switches the whole process to
# flush-to-zero when the library is loaded.
# Calls on fewer logits (K x weights) run on one thread; larger ones are split across the CPUs
# this process may use. Starting a thread costs about 40 us here, as long as one thread takes
# for a forward and backward pass over this many logits.
PARALLEL_MIN_LOGITS = 1 << 16
_FLAGS = ("-O3", "-march=native", "-mprefer-vector-width=512", "-pthread", "-shared", "-fPIC", "-std=c++17",
          f"-DSLB_PARALLEL_MIN_LOGITS={PARALLEL_MIN_LOGITS}")

# Every function the package calls in the library.
_ENTRY_POINTS = ("SlbSoftWeightForward", "SlbSoftWeightBackward", "SlbScaledWeightForward",
                 "SlbScaledWeightBackward", "SlbSoftWeightBackwardUpdate", "SlbScaledWeightBackwardUpdate",
                 "SlbThreadsFor")

# The fused update's inputs, in the kernel's order: the logits' momentum buffer; the optimizer's
# learning rate (one value, or one per step), step counter and momentum, as it holds them; and the
# layer's [weight decay times the loss scale, gradient scale].
UPDATE_INPUTS = ("moment", "learning_rates", "global_step", "momentum", "layer_values")

_lock = threading.Lock()
_libraries = {}  # (cache dir, compiler) -> path of the built library, or None after a failure
_ops = {}  # library path -> {(update, scaled): forward Custom op} (their bprops hold the backward ops)
_warned = set()


def _warn_once(message):
    if message not in _warned:
        _warned.add(message)
        logger.warning("mindspore_slb native kernel disabled: %s; using plain MindSpore ops.", message)


def _cpu_identity():
    """Model name and feature flags: what -march=native depends on."""
    wanted = {"model name", "flags"}
    found = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in wanted and key not in found:
                    found[key] = value.strip()
                if len(found) == len(wanted):
                    break
    except OSError:
        pass
    return repr(sorted(found.items()))


def _build(cache_dir, compiler):
    """Compiles the kernel into cache_dir unless an identical build is there; returns its path."""
    with open(_SOURCE, "rb") as source:
        code = source.read()
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=True).stdout
    key = hashlib.sha256(
        b"\0".join([code, " ".join(_FLAGS).encode(), version.encode(), _cpu_identity().encode()])
    ).hexdigest()[:16]
    target = os.path.join(cache_dir, f"slb_soft_weight_{key}.so")
    if os.path.isfile(target):
        if _loadable(target):
            return target
        logger.warning("mindspore_slb: the cached kernel library %s is damaged; rebuilding it.", target)
        os.remove(target)
    os.makedirs(cache_dir, exist_ok=True)
    # Build under a unique name and rename: a concurrent process either sees no library or a
    # complete one, and two processes building at once both end with a complete file.
    fd, partial = tempfile.mkstemp(prefix=".slb_soft_weight_", suffix=".so", dir=cache_dir)
    os.close(fd)
    try:
        result = subprocess.run([compiler, *_FLAGS, "-o", partial, _SOURCE], capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"g++ failed: {result.stderr.strip()[-2000:]}")
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return target


def _loadable(path):
    """Whether path is a shared library with the kernel's entry points: a cached file can be
    truncated or damaged, and MindSpore would only fail on it when the first step runs."""
    try:
        library = ctypes.CDLL(path)
    except OSError:
        return False
    return all(hasattr(library, name) for name in _ENTRY_POINTS)


def _library():
    """Path of the built library for the current cache dir and compiler, or None (after a warning)."""
    compiler = shutil.which("g++")
    if compiler is None:
        _warn_once("no g++ on PATH")
        return None
    cache_dir = os.environ.get("MINDSPORE_SLB_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "mindspore_slb"
    )
    key = (os.path.abspath(cache_dir), compiler)
    with _lock:
        if key not in _libraries:
            try:
                _libraries[key] = _build(*key)
            except (OSError, subprocess.SubprocessError, RuntimeError) as error:
                _warn_once(f"building {_SOURCE} failed ({error})")
                _libraries[key] = None
        return _libraries[key]


def _make_ops(library):
    """{(update, scaled): forward Custom op} of the library; their bprops hold the backward ops."""
    backward = ops.Custom(
        f"{library}:SlbSoftWeightBackward",
        out_shape=lambda logits, temperature, hard, dout: logits,
        out_dtype=lambda logits, temperature, hard, dout: _gradient_dtype(logits),
        func_type="aot",
    )

    # MindSpore calls bprop with the inputs, the forward output and its gradient, and wants one
    # gradient per input; the temperature and the flag are not trained.
    def bprop(logits, temperature, hard, out, dout):
        return backward(logits, temperature, hard, dout), ops.zeros_like(temperature), ops.zeros_like(hard)

    scaled_backward = ops.Custom(
        f"{library}:SlbScaledWeightBackward",
        out_shape=lambda logits, temperature, hard, scale, dout: (logits, scale),
        out_dtype=lambda logits, temperature, hard, scale, dout: (_gradient_dtype(logits), scale),
        func_type="aot",
    )

    def scaled_bprop(logits, temperature, hard, scale, out, dout):
        dlogits, dscale = scaled_backward(logits, temperature, hard, scale, dout)
        return dlogits, ops.zeros_like(temperature), ops.zeros_like(hard), dscale

    backward_update = ops.Custom(
        f"{library}:SlbSoftWeightBackwardUpdate",
        out_shape=lambda logits, temperature, hard, dout, moment, *update: [1],
        out_dtype=lambda logits, temperature, hard, dout, moment, *update: _token_dtype(logits, moment),
        func_type="aot",
    )

    # The token stands for the gradients of the logits and of the update's inputs: none of them is
    # differentiated further, and a full-size gradient is what the update avoids.
    def update_bprop(logits, temperature, hard, moment, rates, step, momentum, layer, out, dout):
        token = backward_update(logits, temperature, hard, dout, moment, rates, step, momentum, layer)
        return (token, ops.zeros_like(temperature), ops.zeros_like(hard)) + (token,) * len(UPDATE_INPUTS)

    scaled_backward_update = ops.Custom(
        f"{library}:SlbScaledWeightBackwardUpdate",
        out_shape=lambda logits, temperature, hard, scale, dout, moment, *update: ([1], scale),
        out_dtype=lambda logits, temperature, hard, scale, dout, moment, *update: (_token_dtype(logits, moment), scale),
        func_type="aot",
    )

    def scaled_update_bprop(logits, temperature, hard, scale, moment, rates, step, momentum, layer, out, dout):
        token, dscale = scaled_backward_update(logits, temperature, hard, scale, dout, moment, rates, step, momentum,
                                               layer)
        return (token, ops.zeros_like(temperature), ops.zeros_like(hard), dscale) + (token,) * len(UPDATE_INPUTS)

    def forward(entry, bprop_function):
        return ops.Custom(
            f"{library}:{entry}",
            out_shape=lambda logits, *rest: logits[1:],
            out_dtype=lambda logits, *rest: mindspore.float32 if _element(logits) == mindspore.bfloat16 else logits,
            func_type="aot",
            bprop=bprop_function,
        )

    return {
        (False, False): forward("SlbSoftWeightForward", bprop),
        (False, True): forward("SlbScaledWeightForward", scaled_bprop),
        (True, False): forward("SlbSoftWeightForward", update_bprop),
        (True, True): forward("SlbScaledWeightForward", scaled_update_bprop),
    }


def _element(dtype):
    """The element type of an infer function's dtype: graph mode passes tensor types
    (Tensor[Float32]), PyNative element types."""
    return dtype.element_type() if hasattr(dtype, "element_type") else dtype


def _gradient_dtype(logits):
    """The plain backward pass's logits gradient dtype, the logits'; bfloat16 logits are refused:
    nn.Momentum cannot step them on CPU."""
    if _element(logits) == mindspore.bfloat16:
        raise TypeError("bfloat16 logits (search_dtype 'bfloat16') train with mindspore_slb.SlbMomentum only; "
                        "use it as the optimizer, or search_dtype 'float32'.")
    return logits


def _token_dtype(logits, moment):
    """The update token's dtype, float32, after checking that the logits and their momentum are both
    float32 or both bfloat16: the kernel updates them in place, and a float16 copy (mixed precision)
    would take the step."""
    elements = (_element(logits), _element(moment))
    if elements not in ((mindspore.float32, mindspore.float32), (mindspore.bfloat16, mindspore.bfloat16)):
        raise TypeError(f"The fused logits update needs float32 (or, search_dtype 'bfloat16', bfloat16) logits and "
                        f"momentum, but got {elements[0]} and {elements[1]}; keep the SLB layers in float32 or use "
                        f"nn.Momentum.")
    return mindspore.float32


def soft_weight_op(num_candidates, scaled=False):
    """Fused SLB weight op for `num_candidates` (K >= 2) values linspace(-1, 1, K), or None.

    The op is called as `op(logits, temperature, hard_flag)`: logits float32 or float16
    [K, *W], temperature and hard_flag tensors (or Parameters) of one element, shape [1] or ();
    it returns [*W] in the logits' dtype. With `scaled`, it is `op(logits, temperature,
    hard_flag, scale)` with scale [W[0]] multiplying each output channel's weights, and its
    gradient reaches the scale too. Changing the temperature or the flag does not recompile a
    graph. The kernel reads K from the logits' leading axis, so one op serves every K. None
    (with one logged warning) when MINDSPORE_SLB_NATIVE=0, the device target is not CPU, g++ is
    not on PATH, the build fails or MindSpore refuses the library (MS_CUSTOM_AOT_WHITE_LIST).
    """
    if not isinstance(num_candidates, int) or num_candidates < 2:
        raise ValueError(f"num_candidates must be an int >= 2, but got {num_candidates!r}")
    if os.environ.get("MINDSPORE_SLB_NATIVE") == "0":
        _warn_once("MINDSPORE_SLB_NATIVE=0")
        return None
    target = mindspore.get_context("device_target")
    if target != "CPU":
        _warn_once(f"device target is {target}, the kernel is CPU only")
        return None
    library = _library()
    if library is None:
        return None
    return _op(library, False, scaled)


def _op(library, update, scaled):
    with _lock:
        if library not in _ops:
            try:
                _ops[library] = _make_ops(library)
            except TypeError as error:  # e.g. the cache dir is outside MS_CUSTOM_AOT_WHITE_LIST
                _warn_once(f"MindSpore refused the kernel library ({error})")
                return None
        return _ops[library][update, scaled]


def soft_weight_update_op(num_candidates, scaled=False):
    """The weight op of `soft_weight_op` whose backward kernel also takes the logits' Momentum step.

    Called as `op(logits, temperature, hard_flag, *update)` (with `scaled`,
    `op(logits, temperature, hard_flag, scale, *update)`), `update` the five inputs UPDATE_INPUTS
    names: the logits' momentum buffer (a Parameter of their shape and dtype), the optimizer's
    learning-rate Parameter (one value, or float32 per-step values read at its step counter), its
    step counter (int32 [1]) and momentum (float32), and the layer's float32 [weight decay times the
    loss scale, gradient scale]. The backward pass computes each block's logits gradient and applies
    nn.Momentum's step to the logits and their momentum in place; the logits' gradient it returns
    is a one-element token. None where `soft_weight_op` is None.
    """
    if soft_weight_op(num_candidates, scaled) is None:
        return None
    return _op(_library(), True, scaled)

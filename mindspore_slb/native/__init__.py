"""Fused CPU kernel for SLB's weight (soft and hard), built with g++ on first use.

`soft_weight_op(K)` returns a MindSpore operator `f(logits, temperature, hard_flag) -> weight`
for candidate-major logits [K, *W] (float32), temperature and hard flag as one-element float32
tensors (hard when the flag is > 0.5). Its gradient w.r.t. the logits is a second fused
kernel; temperature and flag get zero gradients. It returns None, after one warning, where the
kernel cannot be used, and the caller falls back to plain MindSpore ops.
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

__all__ = ["soft_weight_op"]

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
                 "SlbScaledWeightBackward", "SlbThreadsFor")

_lock = threading.Lock()
_libraries = {}  # (cache dir, compiler) -> path of the built library, or None after a failure
_ops = {}  # library path -> (unscaled, scaled) forward Custom ops (their bprops hold the backward ops)
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
    """(unscaled, scaled) forward Custom ops of the library; their bprops hold the backward ops."""
    backward = ops.Custom(
        f"{library}:SlbSoftWeightBackward",
        out_shape=lambda logits, temperature, hard, dout: logits,
        out_dtype=lambda logits, temperature, hard, dout: logits,
        func_type="aot",
    )

    # MindSpore calls bprop with the inputs, the forward output and its gradient, and wants one
    # gradient per input; the temperature and the flag are not trained.
    def bprop(logits, temperature, hard, out, dout):
        return backward(logits, temperature, hard, dout), ops.zeros_like(temperature), ops.zeros_like(hard)

    forward = ops.Custom(
        f"{library}:SlbSoftWeightForward",
        out_shape=lambda logits, temperature, hard: logits[1:],
        out_dtype=lambda logits, temperature, hard: logits,
        func_type="aot",
        bprop=bprop,
    )
    scaled_backward = ops.Custom(
        f"{library}:SlbScaledWeightBackward",
        out_shape=lambda logits, temperature, hard, scale, dout: (logits, scale),
        out_dtype=lambda logits, temperature, hard, scale, dout: (logits, scale),
        func_type="aot",
    )

    def scaled_bprop(logits, temperature, hard, scale, out, dout):
        dlogits, dscale = scaled_backward(logits, temperature, hard, scale, dout)
        return dlogits, ops.zeros_like(temperature), ops.zeros_like(hard), dscale

    scaled_forward = ops.Custom(
        f"{library}:SlbScaledWeightForward",
        out_shape=lambda logits, temperature, hard, scale: logits[1:],
        out_dtype=lambda logits, temperature, hard, scale: logits,
        func_type="aot",
        bprop=scaled_bprop,
    )
    return forward, scaled_forward


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
    with _lock:
        if library not in _ops:
            try:
                _ops[library] = _make_ops(library)
            except TypeError as error:  # e.g. the cache dir is outside MS_CUSTOM_AOT_WHITE_LIST
                _warn_once(f"MindSpore refused the kernel library ({error})")
                return None
        return _ops[library][1 if scaled else 0]

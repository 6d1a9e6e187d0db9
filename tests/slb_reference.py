"""The SLB formula in NumPy (float64), the reference the quantizer and the fused kernel are held to."""
import numpy as np


def soft_weight_and_gradient(logits, temperature, upstream):
    """Soft weight sum_k softmax(T a)_k v_k and its gradient w.r.t. the logits."""
    values = np.linspace(-1, 1, logits.shape[0]).reshape((-1,) + (1,) * (logits.ndim - 1))
    scaled = temperature * logits.astype(np.float64)
    probabilities = np.exp(scaled - scaled.max(0))
    probabilities /= probabilities.sum(0)
    weight = (probabilities * values).sum(0)
    return weight, upstream * temperature * probabilities * (values - weight)


def hard_weight(logits):
    """v[argmax_k a_k] with the candidates as float32, first maximum on ties."""
    return np.linspace(-1, 1, logits.shape[0]).astype(np.float32)[logits.argmax(0)]

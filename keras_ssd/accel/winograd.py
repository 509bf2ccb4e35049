"""Winograd F(m x m, 3 x 3) convolution with `keras.ops`.

A 3x3, stride-1 convolution computes every `m x m` block of outputs from an
`(m + 2) x (m + 2)` input tile. Winograd's minimal filtering algorithm
(Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016)
transforms the tile and the kernel into `(m + 2)^2` "frequency" planes, where
the convolution becomes one matrix product per plane, then transforms the
products back:

    Y = A^T [ (G g G^T) * (B^T d B) ] A

For the channel sum this is `(m + 2)^2` batched matmuls of shape
`(tiles, C) @ (C, K)`: F(2x2, 3x3) does 16 multiplies per 4 outputs instead
of 36 (2.25x fewer), F(4x4, 3x3) 36 per 16 instead of 144 (4x fewer). The
input and output transforms are additions with small constants: memory-bound
element-wise work that XLA fuses into a few passes (`keras_ssd.xla`), while
the matmuls run through the backend's own GEMM.

The result equals the direct convolution up to float rounding: about 3e-6
(F2) and 2e-5 (F4) of the output's largest magnitude in float32. In
bfloat16 F4's error reaches 10%, so `keras_ssd.accel.prepare_for_inference`
and `WinogradConv2D` only use this path in float32.
"""

import contextlib
import warnings

import numpy as np
from keras import ops

from keras_ssd.xla import xla_compiled

#: (B^T, G, A^T) per output tile size m, from the Cook-Toom construction
#: with interpolation points 0, 1, -1 (m = 2) and 0, +-1, +-2 (m = 4), in
#: float64 (exact but for G's thirds and sixths); the graph uses float32.
TRANSFORMS = {
    2: (
        np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64),
        np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float64),
        np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64),
    ),
    4: (
        np.array([[4, 0, -5, 0, 1, 0],
                  [0, -4, -4, 1, 1, 0],
                  [0, 4, -4, -1, 1, 0],
                  [0, -2, -1, 2, 1, 0],
                  [0, 2, -1, -2, 1, 0],
                  [0, 4, 0, -5, 0, 1]], np.float64),
        np.array([[1 / 4, 0, 0],
                  [-1 / 6, -1 / 6, -1 / 6],
                  [-1 / 6, 1 / 6, -1 / 6],
                  [1 / 24, 1 / 12, 1 / 6],
                  [1 / 24, -1 / 12, 1 / 6],
                  [0, 0, 1]], np.float64),
        np.array([[1, 1, 1, 1, 1, 0],
                  [0, 1, -1, 2, -2, 0],
                  [0, 1, 1, 4, 4, 0],
                  [0, 1, -1, 8, -8, 1]], np.float64),
    ),
}

_DISABLED = []


@contextlib.contextmanager
def disabled():
    """Deprecated: within this context `WinogradConv2D` layers (and the
    views of `keras_ssd.accel.prepare_for_inference`) traced anew use the
    direct convolution.

    Export no longer needs it: keras-ssd's models hold plain `Conv2D`
    layers, and the Winograd path is applied to a model only when it is
    prepared for inference. To run a model without it, run the model itself
    (or `prepare_for_inference(model, winograd=False)`). Goes in 0.3.
    """
    warnings.warn(
        "keras_ssd.accel.winograd.disabled() is deprecated: models hold plain Conv2D "
        "layers and export needs no switch; run the model itself, or "
        "prepare_for_inference(model, winograd=False), for direct convolutions",
        DeprecationWarning,
        stacklevel=3,
    )
    _DISABLED.append(True)
    try:
        yield
    finally:
        _DISABLED.pop()


def is_disabled():
    """True inside the deprecated `disabled()` context."""
    return bool(_DISABLED)


def _check_tile(m):
    if m not in TRANSFORMS:
        raise ValueError(f"Winograd output tile must be one of {sorted(TRANSFORMS)}, got {m!r}")


def _combine(coefficients, terms):
    """`sum_i coefficients[i] * terms[i]`, skipping zero coefficients and
    multiplications by one."""
    total = None
    for c, t in zip(coefficients, terms):
        c = float(c)
        if c == 0.0:
            continue
        part = t if c == 1.0 else (-t if c == -1.0 else t * c)
        total = part if total is None else total + part
    return total


def transform_kernel(kernel, m):
    """`(3, 3, C, K)` kernel -> `(a * a, C, K)` planes `G g G^T`, a = m + 2."""
    _check_tile(m)
    g = TRANSFORMS[m][1]
    a = g.shape[0]
    g = ops.convert_to_tensor(g.astype("float32"))
    u = ops.einsum("xi,ijck,yj->xyck", g, ops.cast(kernel, "float32"), g)
    return ops.reshape(u, (a * a, kernel.shape[2], kernel.shape[3]))


def transform_input(x, m):
    """`(B, H, W, C)` input -> `(a * a, B * T * S, C)` tile planes `B^T d B`.

    Pads one pixel on the top/left (the "same" 3x3 border) and enough on the
    bottom/right for `T = ceil(H / m)` by `S = ceil(W / m)` tiles.
    """
    _check_tile(m)
    bt = TRANSFORMS[m][0]
    a = bt.shape[0]
    h, w, c = int(x.shape[1]), int(x.shape[2]), int(x.shape[3])
    t, s = -(-h // m), -(-w // m)
    xp = ops.pad(x, ((0, 0), (1, t * m + 1 - h), (1, s * m + 1 - w), (0, 0)))
    # Separable transform: rows first (strided row slices), then columns.
    rows = [xp[:, i:i + m * t:m] for i in range(a)]
    row_planes = [_combine(bt[r], rows) for r in range(a)]
    planes = []
    for rp in row_planes:
        cols = [rp[:, :, j:j + m * s:m] for j in range(a)]
        planes.extend(_combine(bt[q], cols) for q in range(a))
    return ops.reshape(ops.stack(planes, axis=0), (a * a, -1, c))


def transform_output(products, m, height, width, channels):
    """`(a * a, B * T * S, channels)` products -> `(B, height, width,
    channels)` outputs `A^T M A`, the tiles put back in place."""
    _check_tile(m)
    at = TRANSFORMS[m][2]
    a = at.shape[1]
    t, s = -(-height // m), -(-width // m)
    k = int(channels)
    planes = ops.reshape(products, (a, a, -1, t, s, k))
    rows = [planes[i] for i in range(a)]
    row_out = [_combine(at[p], rows) for p in range(m)]  # each (a, B, T, S, K)
    blocks = []
    for ro in row_out:
        cols = [ro[j] for j in range(a)]
        blocks.append(ops.stack([_combine(at[q], cols) for q in range(m)], axis=0))
    y = ops.stack(blocks, axis=0)  # (m, m, B, T, S, K)
    y = ops.transpose(y, (2, 3, 0, 4, 1, 5))  # (B, T, m, S, m, K)
    y = ops.reshape(y, (-1, t * m, s * m, k))
    return y[:, :height, :width]


def winograd_conv3x3(x, kernel, m=2):
    """A 3x3, stride-1, "same"-padded convolution computed as Winograd
    F(m x m, 3 x 3).

    Args:
        x: `(B, H, W, C)` channels-last input.
        kernel: `(3, 3, C, K)` kernel, as a Keras `Conv2D` stores it.
        m: output tile size, 2 or 4.

    Returns:
        `(B, H, W, K)`, equal to `ops.conv(x, kernel, padding="same")` up to
        float rounding.

    On the TensorFlow backend the two transforms run as XLA clusters and the
    `(m + 2)^2` matmuls as one batched GEMM between them.
    """
    _check_tile(m)
    if tuple(kernel.shape[:2]) != (3, 3):
        raise ValueError(f"winograd_conv3x3 needs a 3x3 kernel, got shape {tuple(kernel.shape)}")
    if int(x.shape[-1]) != int(kernel.shape[2]):
        raise ValueError(
            f"winograd_conv3x3: input has {x.shape[-1]} channels, kernel expects "
            f"{kernel.shape[2]}"
        )
    height, width = int(x.shape[1]), int(x.shape[2])
    to_planes = xla_compiled(("winograd_input", m), transform_input)
    from_planes = xla_compiled(("winograd_output", m), transform_output)
    weights = xla_compiled(("winograd_kernel", m), transform_kernel)
    products = ops.matmul(to_planes(x, m), weights(kernel, m))
    return from_planes(products, m, height, width, int(kernel.shape[3]))

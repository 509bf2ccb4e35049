"""Sources described by a layer table: every keras-ssd layer with weights
and the state-dict tensors it takes (the SSDLite320 and SSD512 sources; the
SSD300 sources share `common.ssd300_layers` instead).

A table is a list of `(keras layer, kind, [(torch key, torch shape)])`:

- `"conv"`: a convolution's weight `(out, in, kh, kw)` (to Keras'
  `(kh, kw, in, out)`), then its bias if the table lists one;
- `"dw"`: a depthwise weight `(C, 1, kh, kw)` (to `(kh, kw, C, 1)`);
- `"bn"`: batch-norm weight, bias, running mean and running variance
  (Keras' gamma, beta, moving mean, moving variance); torch's
  `num_batches_tracked` counters are accepted and not used;
- `"scale"`: the L2Norm scale, as it is.
"""

import dataclasses
from typing import Callable, Optional

import numpy as np

from keras_ssd.models.convert.common import ConversionError, Source, _describe


def bn_keys(prefix, channels):
    """The four tensors of a torch `BatchNorm2d` at `prefix`, with their shapes."""
    return [(f"{prefix}.{p}", (channels,))
            for p in ("weight", "bias", "running_mean", "running_var")]


@dataclasses.dataclass(frozen=True)
class LayerTableSource(Source):
    """A `Source` whose network is the keras-ssd variant `architecture`,
    described by `table(num_outputs)`.

    Attributes (beyond `Source`'s):
        architecture: the keras-ssd variant it converts into.
        table: `num_outputs -> layer table` (see the module docstring).
        class_head_bias: the key of the first class head's bias.
        boxes_first: priors per cell of the first map (its bias holds
            `boxes_first * num_outputs` values).
        normalization: the `SSD(normalization=)` of the converted model
            (`None`: the variant's default).
    """

    architecture: str = "ssd300"
    table: Optional[Callable] = None
    class_head_bias: str = ""
    boxes_first: int = 6
    normalization: Optional[str] = None

    def prepare(self, state):
        """`state` in the layout `table` names (the identity here; a source
        with an older layout of the same network renames its keys)."""
        return state

    def num_outputs_of(self, state, where=""):
        """Logits per prior (background included), from the first class head."""
        if self.class_head_bias not in state:
            raise ConversionError(
                f"{where}the state dict has no {self.class_head_bias!r} (the first class "
                f"head's bias of a {self.name} {self.architecture}), so its class count "
                "is unknown")
        bias = np.asarray(state[self.class_head_bias])
        k = self.boxes_first
        if bias.ndim != 1 or bias.shape[0] % k or bias.shape[0] // k < 2:
            raise ConversionError(
                f"{where}{self.class_head_bias!r} has shape {tuple(bias.shape)}; a "
                f"{self.name} class head has {k} * (classes + 1) outputs")
        return bias.shape[0] // k

    def expected(self, num_outputs):
        """`{torch key: (keras layer, torch shape)}` of every tensor."""
        return {key: (layer, shape) for layer, _, tensors in self.table(num_outputs)
                for key, shape in tensors}

    def check_state_dict(self, state, num_outputs, where=""):
        """`ConversionError` naming every missing, unexpected or misshapen key."""
        expected = self.expected(num_outputs)
        tracked = {k for k in state if k.endswith(".num_batches_tracked")}
        missing = set(expected) - set(state)
        extra = set(state) - set(expected) - tracked
        problems = []
        if missing:
            problems.append(f"missing keys: {_describe(missing)}")
        if extra:
            problems.append(f"unexpected keys: {_describe(extra)}")
        for key, (layer, shape) in expected.items():
            if key in state and tuple(np.shape(state[key])) != tuple(shape):
                problems.append(f"{key!r} (keras-ssd layer {layer}) has shape "
                                f"{tuple(np.shape(state[key]))}, expected {tuple(shape)}")
        if problems:
            raise ConversionError(
                f"{where}the state dict is not a {self.name} {self.architecture} with "
                f"{num_outputs} class outputs: " + "; ".join(problems))

    def keras_weights(self, state, num_outputs):
        """keras layer name -> its weights, in Keras' layout."""
        out = {}
        for layer, kind, tensors in self.table(num_outputs):
            arrays = [np.asarray(state[key], dtype=np.float32) for key, _ in tensors]
            if kind == "conv":
                arrays[0] = np.ascontiguousarray(arrays[0].transpose(2, 3, 1, 0))
            elif kind == "dw":
                arrays[0] = np.ascontiguousarray(arrays[0].transpose(2, 3, 0, 1))
            out[layer] = arrays
        return out

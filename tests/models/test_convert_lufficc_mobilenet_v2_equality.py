"""The converted lufficc/SSD MobileNetV2 SSDLite320 computes what lufficc's
code computes (needs torch; skipped without it).

lufficc/SSD is not installable here, so a child process (torch only) builds
its network as `ssd/modeling/backbone/mobilenet.py` (`ConvBNReLU`,
`InvertedResidual`, `MobileNetV2` with its `extras`; PyTorch's symmetric
padding), `ssd/layers/separable_conv.py` (`SeparableConv2d`) and
`box_head/box_predictor.py` (`SSDLiteBoxPredictor`: separable heads, a 1x1
convolution on the last map) write it, with the same module names, so that
its state dict has the published file's keys; random weights, random
batch-norm statistics and biases, a few class biases raised; saved as
lufficc's `{"model": ..., "iteration": ...}` checkpoint. It records, on a
real photo (scikit-image's astronaut, 320 x 320), the six feature maps and
the head outputs. Here the file is converted without torch, and the priors
and detections are compared with numpy re-implementations of lufficc's
`PriorBox` (`configs/mobilenet_v2_ssd320_voc0712.yaml`) and `PostProcessor`.
"""

import numpy as np
import pytest

from benchmarks.torch_reference import (
    compare_network, compare_priors, lufficc_postprocess, lufficc_prior_box,
    match_decoded)
from keras_ssd.models.convert import convert_checkpoint

SIZE = 320

TORCH_CHILD = r"""
import os, sys
import numpy as np
import torch
from torch import nn

from benchmarks.torch_reference import (
    lufficc_detector, lufficc_predict, random_batch_norm, record_lufficc)

out = sys.argv[1]
torch.manual_seed(0)
image = np.load(os.path.join(out, "image.npy"))

# ssd/modeling/backbone/mobilenet.py
class ConvBNReLU(nn.Sequential):
    def __init__(self, cin, cout, kernel_size=3, stride=1, groups=1):
        padding = (kernel_size - 1) // 2
        super().__init__(nn.Conv2d(cin, cout, kernel_size, stride, padding, groups=groups,
                                   bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))

class InvertedResidual(nn.Module):
    def __init__(self, inp, oup, stride, expand_ratio):
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU(inp, hidden, kernel_size=1))
        layers += [ConvBNReLU(hidden, hidden, stride=stride, groups=hidden),
                   nn.Conv2d(hidden, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup)]
        self.conv = nn.Sequential(*layers)
    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)

class MobileNetV2(nn.Module):
    def __init__(self):
        super().__init__()
        setting = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2],
                   [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]]
        cin = 32
        features = [ConvBNReLU(3, cin, stride=2)]
        for t, c, n, s in setting:
            for i in range(n):
                features.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        features.append(ConvBNReLU(cin, 1280, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.extras = nn.ModuleList([InvertedResidual(1280, 512, 2, 0.2),
                                     InvertedResidual(512, 256, 2, 0.25),
                                     InvertedResidual(256, 256, 2, 0.5),
                                     InvertedResidual(256, 64, 2, 0.25)])
    def forward(self, x):
        features = []
        for i in range(14):
            x = self.features[i](x)
        features.append(x)
        for i in range(14, len(self.features)):
            x = self.features[i](x)
        features.append(x)
        for extra in self.extras:
            x = extra(x)
            features.append(x)
        return tuple(features)

# ssd/layers/separable_conv.py
class SeparableConv2d(nn.Module):
    def __init__(self, cin, cout, kernel_size=1, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(cin, cin, kernel_size, groups=cin, stride=stride, padding=padding),
            nn.BatchNorm2d(cin), nn.ReLU6(), nn.Conv2d(cin, cout, kernel_size=1))
    def forward(self, x):
        return self.conv(x)

# ssd/modeling/box_head/box_predictor.py (SSDLiteBoxPredictor)
class Predictor(nn.Module):
    def __init__(self, num_classes=21, channels=(96, 1280, 512, 256, 256, 64), boxes=6):
        super().__init__()
        self.num_classes = num_classes
        def block(level, c, width):
            if level == len(channels) - 1:
                return nn.Conv2d(c, boxes * width, kernel_size=1)
            return SeparableConv2d(c, boxes * width, kernel_size=3, stride=1, padding=1)
        self.cls_headers = nn.ModuleList(block(i, c, num_classes)
                                         for i, c in enumerate(channels))
        self.reg_headers = nn.ModuleList(block(i, c, 4) for i, c in enumerate(channels))
    def forward(self, features):
        return lufficc_predict(features, self.cls_headers, self.reg_headers,
                               self.num_classes, torch)

model = lufficc_detector(MobileNetV2(), Predictor(), torch).eval()
g = torch.Generator().manual_seed(0)
with torch.no_grad():
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.weight[0].numel()
            scale = 1 / 128.0 if name == "backbone.features.0.0" else 1.0
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) / fan_in ** 0.5 * scale)
            if m.bias is not None:
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
        if isinstance(m, nn.BatchNorm2d):
            random_batch_norm(m, torch, g)
    for head in model.box_head.predictor.cls_headers:
        conv = head if isinstance(head, nn.Conv2d) else head.conv[3]
        bias = conv.bias.view(-1, 21)
        bias[:, 0] += 3.0  # the background: most priors score below 0.01
        for c, up in {15: 3.0, 7: 2.8, 12: 2.6}.items():
            bias[:, c] += up
record_lufficc(model, image, out, "mobilenet_v2_ssd320_voc0712_v2.pth", torch)
"""

SOURCE_MAPS = ["block13_add", "last_conv_relu", "extra1_project_bn", "extra2_project_bn",
               "extra3_project_bn", "extra4_project_bn"]


def lufficc_prior_box_320():
    """lufficc's `PriorBox` with `configs/mobilenet_v2_ssd320_voc0712.yaml`
    (`PRIORS`: ratios {2, 3} on every map, `CLIP: True`)."""
    return lufficc_prior_box(SIZE, feature_maps=[20, 10, 5, 3, 2, 1],
                             strides=[16, 32, 64, 107, 160, 320],
                             min_sizes=[60, 105, 150, 195, 240, 285],
                             max_sizes=[105, 150, 195, 240, 285, 330],
                             aspect_ratios=[[2, 3]] * 6)


@pytest.fixture(scope="module")
def reference(torch_photo_reference):
    return torch_photo_reference(TORCH_CHILD, SIZE, "torch_lufficc_mobilenet_v2")


def test_lufficc_mobilenet_v2_conversion_equals_its_source(reference, capsys):
    out, report, ref, image = reference
    model = convert_checkpoint(out / "mobilenet_v2_ssd320_voc0712_v2.pth")  # sniffed
    assert model.architecture == "ssdlite320_mobilenet_v2" and model.num_classes == 20
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == report["params"]
    figures = {}
    ref_priors = lufficc_prior_box_320()
    assert ref_priors.shape == (3234, 4)
    compare_priors(model, ref_priors, SIZE, figures)
    predictions = compare_network(model, image, ref, SOURCE_MAPS, figures)
    theirs, gap = lufficc_postprocess(ref["loc"][0], ref["conf"][0], ref_priors, size=SIZE)
    figures["detections (lufficc)"] = len(theirs[0])
    figures["score gap at the 100 cut"] = gap
    assert len(theirs[0]) >= 50 and (gap is None or gap > 1e-5)  # no tie at the cut
    heads = np.concatenate([ref["loc"], ref["conf"]], -1)
    match_decoded(model, heads, predictions, theirs, SIZE, figures, "lufficc")
    with capsys.disabled():
        print("\n[lufficc mobilenet_v2 ssdlite320] "
              + ", ".join(f"{k}: {v}" for k, v in figures.items()))

"""The converted lufficc/SSD SSD512 computes what lufficc's code computes
(needs torch; skipped without it).

lufficc/SSD is not installable here, so a child process (torch only) builds
its SSD512 network as `ssd/modeling/backbone/vgg.py` (`add_vgg`,
`add_extras` with size 512, `L2Norm`) and `box_head/box_predictor.py`
(`SSDBoxPredictor`) write it, with the same module names, so that its state
dict has the published file's keys; random weights, a few class biases
raised; saved as lufficc's `{"model": ..., "iteration": ...}` checkpoint.
It records, on a real photo (scikit-image's astronaut, 512 x 512), the
seven feature maps and the head outputs. Here the file is converted without
torch, and the priors and detections are compared with numpy
re-implementations of lufficc's `PriorBox` (from
`configs/vgg_ssd512_voc0712.yaml`) and `PostProcessor`.
"""

import numpy as np
import pytest

from benchmarks.torch_reference import (
    compare_network, compare_priors, lufficc_postprocess, lufficc_prior_box,
    match_decoded)
from keras_ssd.models.convert import convert_checkpoint

SIZE = 512

TORCH_CHILD = r"""
import os, sys
import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from benchmarks.torch_reference import lufficc_detector, lufficc_predict, record_lufficc

out = sys.argv[1]
torch.manual_seed(0)
image = np.load(os.path.join(out, "image.npy"))

# ssd/modeling/backbone/vgg.py (size 512)
def add_vgg(cfg):
    layers, in_channels = [], 3
    for v in cfg:
        if v == 'M':
            layers += [nn.MaxPool2d(kernel_size=2, stride=2)]
        elif v == 'C':
            layers += [nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True)]
        else:
            layers += [nn.Conv2d(in_channels, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            in_channels = v
    layers += [nn.MaxPool2d(kernel_size=3, stride=1, padding=1),
               nn.Conv2d(512, 1024, kernel_size=3, padding=6, dilation=6), nn.ReLU(inplace=True),
               nn.Conv2d(1024, 1024, kernel_size=1), nn.ReLU(inplace=True)]
    return layers

def add_extras(cfg, i, size=512):
    layers, in_channels, flag = [], i, False
    for k, v in enumerate(cfg):
        if in_channels != 'S':
            if v == 'S':
                layers += [nn.Conv2d(in_channels, cfg[k + 1], kernel_size=(1, 3)[flag], stride=2, padding=1)]
            else:
                layers += [nn.Conv2d(in_channels, v, kernel_size=(1, 3)[flag])]
            flag = not flag
        in_channels = v
    if size == 512:
        layers.append(nn.Conv2d(in_channels, 128, kernel_size=1, stride=1))
        layers.append(nn.Conv2d(128, 256, kernel_size=4, stride=1, padding=1))
    return layers

class L2Norm(nn.Module):
    def __init__(self, n_channels, scale):
        super().__init__()
        self.eps = 1e-10
        self.weight = nn.Parameter(torch.full((n_channels,), float(scale)))
    def forward(self, x):
        norm = x.pow(2).sum(dim=1, keepdim=True).sqrt() + self.eps
        x = torch.div(x, norm)
        return self.weight.unsqueeze(0).unsqueeze(2).unsqueeze(3).expand_as(x) * x

class VGG(nn.Module):
    def __init__(self):
        super().__init__()
        self.vgg = nn.ModuleList(add_vgg([64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'C',
                                          512, 512, 512, 'M', 512, 512, 512]))
        self.extras = nn.ModuleList(add_extras(
            [256, 'S', 512, 128, 'S', 256, 128, 'S', 256, 128, 'S', 256], i=1024, size=512))
        self.l2_norm = L2Norm(512, scale=20)
    def forward(self, x):
        features = []
        for i in range(23):
            x = self.vgg[i](x)
        features.append(self.l2_norm(x))
        for i in range(23, len(self.vgg)):
            x = self.vgg[i](x)
        features.append(x)
        for k, v in enumerate(self.extras):
            x = F.relu(v(x), inplace=True)
            if k % 2 == 1:
                features.append(x)
        return tuple(features)

class Predictor(nn.Module):
    def __init__(self, num_classes=21, boxes=(4, 6, 6, 6, 6, 4, 4),
                 channels=(512, 1024, 512, 256, 256, 256, 256)):
        super().__init__()
        self.num_classes = num_classes
        self.cls_headers = nn.ModuleList(nn.Conv2d(c, b * num_classes, 3, 1, 1)
                                         for b, c in zip(boxes, channels))
        self.reg_headers = nn.ModuleList(nn.Conv2d(c, b * 4, 3, 1, 1)
                                         for b, c in zip(boxes, channels))
    def forward(self, features):
        return lufficc_predict(features, self.cls_headers, self.reg_headers,
                               self.num_classes, torch)

model = lufficc_detector(VGG(), Predictor(), torch).eval()
with torch.no_grad():
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.weight[0].numel()
            std = (2.0 / fan_in) ** 0.5 / (64.0 if name == "backbone.vgg.0" else 1.0)
            m.weight.normal_(0.0, std)
            m.bias.zero_()
    for conv in model.box_head.predictor.cls_headers:
        bias = conv.bias.view(-1, 21)
        bias[:, 0] += 2.0
        for c, up in {15: 2.0, 7: 1.5, 12: 1.0}.items():
            bias[:, c] += up
record_lufficc(model, image, out, "vgg_ssd512_voc0712.pth", torch)
"""

SOURCE_MAPS = ["conv4_3_norm", "fc7", "conv6_2", "conv7_2", "conv8_2", "conv9_2", "conv10_2"]


def lufficc_prior_box_512():
    """lufficc's `PriorBox` with `configs/vgg_ssd512_voc0712.yaml` (`PRIORS`,
    `CLIP: True`)."""
    return lufficc_prior_box(SIZE, feature_maps=[64, 32, 16, 8, 4, 2, 1],
                             strides=[8, 16, 32, 64, 128, 256, 512],
                             min_sizes=[35.84, 76.8, 153.6, 230.4, 307.2, 384.0, 460.8],
                             max_sizes=[76.8, 153.6, 230.4, 307.2, 384.0, 460.8, 537.65],
                             aspect_ratios=[[2], [2, 3], [2, 3], [2, 3], [2, 3], [2], [2]])


@pytest.fixture(scope="module")
def reference(torch_photo_reference):
    return torch_photo_reference(TORCH_CHILD, SIZE, "torch_ssd512")  # as it ships


def test_lufficc_ssd512_conversion_equals_its_source(reference, capsys):
    out, report, ref, image = reference
    model = convert_checkpoint(out / "vgg_ssd512_voc0712.pth")  # sniffed: lufficc512
    assert model.architecture == "ssd512" and model.num_classes == 20
    assert model.count_params() == report["params"]
    figures = {}
    ref_priors = lufficc_prior_box_512()
    assert ref_priors.shape == (24564, 4)
    compare_priors(model, ref_priors, SIZE, figures)
    predictions = compare_network(model, image, ref, SOURCE_MAPS, figures)
    theirs, gap = lufficc_postprocess(ref["loc"][0], ref["conf"][0], ref_priors, size=SIZE)
    # the 100 cut acts, without a tie (`match_decoded`: ours are as many)
    assert len(theirs[0]) == 100 and gap is not None and gap > 1e-5
    figures["score gap at the 100 cut"] = gap
    heads = np.concatenate([ref["loc"], ref["conf"]], -1)
    match_decoded(model, heads, predictions, theirs, SIZE, figures, "lufficc")
    with capsys.disabled():
        print("\n[lufficc ssd512] " + ", ".join(f"{k}: {v}" for k, v in figures.items()))

"""The converted mmdetection SSDs compute what mmdetection's network computes
(needs torch; skipped without it).

mmdetection is not installable here, so a child process (torch only) builds
its SSD300 (COCO, 81 logits) and SSD512 (VOC, 21 logits) as
`mmdet/models/backbones/ssd_vgg.py` (`SSDVGG` on mmcv's `VGG`: ceil-mode
pools, pool5 3x3/1/1, fc6 dilation 6, fc7; outputs after the ReLUs of
conv4_3 and fc7), `necks/ssd_neck.py` (`L2Norm` with eps added to the norm,
`extra_layers.<i>.<0|1>.conv` with ReLU) and `dense_heads/ssd_head.py`
(`cls_convs.<i>.0`, `reg_convs.<i>.0`) write them, with their module names;
random weights, a few class biases raised (the background is mmdetection's
last logit); saved as mmdetection saves (`{"meta": ..., "state_dict": ...}`).
It records, on a real photo (scikit-image's astronaut), the feature maps and
the head outputs in mmdetection's order. Here each file is converted
without torch; head outputs, priors (a numpy `SSDAnchorGenerator`) and the
final detections (a numpy re-implementation of its dense head's
post-processing) are compared.
"""

import importlib.util

import numpy as np
import pytest

from keras_ssd.anchors import generate_anchors
from keras_ssd.models.convert import convert_checkpoint

from benchmarks.torch_reference import (
    decode_first, match_detections, photo, record_reference, relative)
from test_convert_mmdetection import (
    CONFIGS, mmdet_anchors, mmdet_postprocess, ours_to_xyxy_px)

pytestmark = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                reason="torch not installed")

TORCH_CHILD = r"""
import json, os, sys
import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

out = sys.argv[1]
torch.manual_seed(0)

class VGG(nn.Module):  # mmcv.cnn.VGG(16, with_last_pool=False, ceil_mode=True) + SSDVGG
    def __init__(self):
        super().__init__()
        layers, cin = [], 3
        for i, (n, c) in enumerate(zip((2, 2, 3, 3, 3), (64, 128, 256, 512, 512))):
            for _ in range(n):
                layers += [nn.Conv2d(cin, c, 3, padding=1), nn.ReLU(inplace=True)]
                cin = c
            if i < 4:
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
        layers += [nn.MaxPool2d(3, 1, 1), nn.Conv2d(512, 1024, 3, padding=6, dilation=6),
                   nn.ReLU(inplace=True), nn.Conv2d(1024, 1024, 1), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
    def forward(self, x):
        outs = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in (22, 34):
                outs.append(x)
        return outs

class ConvModule(nn.Module):  # mmcv ConvModule without norm: conv, then ReLU
    def __init__(self, cin, cout, k, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=padding)
    def forward(self, x):
        return F.relu(self.conv(x))

class L2Norm(nn.Module):
    def __init__(self, n, scale=20.0, eps=1e-10):
        super().__init__()
        self.weight = nn.Parameter(torch.full((n,), scale))
        self.eps = eps
    def forward(self, x):
        norm = x.pow(2).sum(1, keepdim=True).sqrt() + self.eps
        return self.weight[None, :, None, None].expand_as(x) * x / norm

class SSDNeck(nn.Module):
    def __init__(self, size):
        super().__init__()
        outs = (512, 1024, 512, 256, 256, 256) + ((256,) if size == 512 else ())
        strides = (2, 2, 1, 1) if size == 300 else (2, 2, 2, 2, 1)
        pads = (1, 1, 0, 0) if size == 300 else (1, 1, 1, 1, 1)
        last = 3 if size == 300 else 4
        self.l2_norm = L2Norm(512)
        self.extra_layers = nn.ModuleList()
        for i, (c, s, p) in enumerate(zip(outs[2:], strides, pads)):
            k = last if i == len(outs) - 3 else 3
            self.extra_layers.append(nn.Sequential(ConvModule(outs[1 + i], c // 2, 1),
                                                   ConvModule(c // 2, c, k, s, p)))
    def forward(self, inputs):
        outs = list(inputs)
        outs[0] = self.l2_norm(outs[0])
        x = outs[-1]
        for layer in self.extra_layers:
            x = layer(x)
            outs.append(x)
        return outs

class SSDHead(nn.Module):
    def __init__(self, size, num_classes):
        super().__init__()
        channels = (512, 1024, 512, 256, 256, 256) + ((256,) if size == 512 else ())
        boxes = (4, 6, 6, 6, 4, 4) if size == 300 else (4, 6, 6, 6, 6, 4, 4)
        k = num_classes + 1
        self.cls_convs = nn.ModuleList(nn.Sequential(nn.Conv2d(c, b * k, 3, padding=1))
                                       for c, b in zip(channels, boxes))
        self.reg_convs = nn.ModuleList(nn.Sequential(nn.Conv2d(c, b * 4, 3, padding=1))
                                       for c, b in zip(channels, boxes))

class SingleStageDetector(nn.Module):
    def __init__(self, size, num_classes):
        super().__init__()
        self.backbone = VGG()
        self.neck = SSDNeck(size)
        self.bbox_head = SSDHead(size, num_classes)

report, arrays = {"torch": torch.__version__}, {}
for size, num_classes, raised in ((300, 80, {0: 3.0, 2: 2.5, 15: 2.0}),
                                  (512, 20, {14: 2.0, 6: 1.5, 11: 1.0})):
    model = SingleStageDetector(size, num_classes).eval()
    k = num_classes + 1
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
                first = name == "backbone.features.0"
                std = (2.0 / fan_in) ** 0.5 / (64.0 if first else 1.0)
                m.weight.normal_(0.0, std)
                m.bias.zero_()
        for seq in model.bbox_head.cls_convs:
            bias = seq[0].bias.view(-1, k)
            bias[:, k - 1] += 2.0  # the background, mmdetection's last logit
            for c, up in raised.items():
                bias[:, c] += up
    image = np.load(os.path.join(out, f"image{size}.npy"))
    mean = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)
    x = torch.from_numpy(image).permute(2, 0, 1)[None] - mean
    with torch.no_grad():
        feats = model.neck(model.backbone(x))
        cls = [h(f) for f, h in zip(feats, model.bbox_head.cls_convs)]
        reg = [h(f) for f, h in zip(feats, model.bbox_head.reg_convs)]
    # mmdetection's order: permute(1, 2, 0).reshape(-1, K) per level
    arrays[f"conf{size}"] = torch.cat([c[0].permute(1, 2, 0).reshape(-1, k)
                                       for c in cls]).numpy()
    arrays[f"loc{size}"] = torch.cat([r[0].permute(1, 2, 0).reshape(-1, 4)
                                      for r in reg]).numpy()
    for i, f in enumerate(feats):
        arrays[f"feature{i}_{size}"] = f.permute(0, 2, 3, 1).numpy()
    meta = {"mmdet_version": "2.14.0",
            "CLASSES": tuple(f"c{i}" for i in range(num_classes)),
            "config": "model = dict(type='SingleStageDetector')", "epoch": 24,
            "hook_msgs": {"last_ckpt": "epoch_24.pth"}}
    torch.save({"meta": meta, "state_dict": model.state_dict()},
               os.path.join(out, f"ssd{size}.pth"))
    report[f"params{size}"] = sum(p.numel() for p in model.parameters())
np.savez(os.path.join(out, "reference.npz"), **arrays)
with open(os.path.join(out, "report.json"), "w") as f:
    json.dump(report, f)
"""

MAPS = {300: ["conv4_3_norm", "fc7", "conv6_2", "conv7_2", "conv8_2", "conv9_2"],
        512: ["conv4_3_norm", "fc7", "conv6_2", "conv7_2", "conv8_2", "conv9_2",
              "conv10_2"]}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    pytest.importorskip("skimage.data")  # the photo (the `bench` extra)

    out = tmp_path_factory.mktemp("torch_mmdet")
    images = {size: photo("astronaut", size) for size in (300, 512)}
    for size, image in images.items():
        np.save(out / f"image{size}.npy", image)
    report, arrays = record_reference(TORCH_CHILD, out)
    return out, report, arrays, images


@pytest.mark.parametrize("size,source", [(300, "mmdet_ssd300_coco"),
                                         (512, "mmdet_ssd512_voc")])
def test_mmdetection_conversion_equals_its_source(reference, size, source, capsys):
    import keras

    out, report, arrays, images = reference
    model = convert_checkpoint(out / f"ssd{size}.pth")  # sniffed
    assert model.architecture == f"ssd{size}"
    assert model.count_params() == report[f"params{size}"]
    figures = {}
    theirs_priors, counts = mmdet_anchors(*CONFIGS[source])
    ours_priors = ours_to_xyxy_px(generate_anchors(model.config), size)
    figures["priors (px)"] = float(np.abs(ours_priors - theirs_priors).max())
    assert figures["priors (px)"] < 1e-4
    probe = keras.Model(model.input, [model.get_layer(n).output for n in MAPS[size]]
                        + [model.output])
    outs = [keras.ops.convert_to_numpy(o) for o in probe(images[size][None])]
    for i, name in enumerate(MAPS[size]):
        figures[name] = relative(outs[i], arrays[f"feature{i}_{size}"])[0]
        assert figures[name] < 1e-4, (name, figures)
    predictions = outs[-1][0]
    loc, conf = arrays[f"loc{size}"], arrays[f"conf{size}"]
    figures["loc"] = relative(predictions[:, :4], loc)[0]
    # keras-ssd: background first; mmdetection: background last
    figures["conf"] = relative(predictions[:, 4:],
                               np.concatenate([conf[:, -1:], conf[:, :-1]], 1))[0]
    assert figures["loc"] < 1e-4 and figures["conf"] < 1e-4, figures
    theirs, _ = mmdet_postprocess(loc.astype(np.float64), conf.astype(np.float64),
                                  theirs_priors, counts, size)
    for key, heads, tol in (("from mmdetection's heads", np.concatenate(
            [loc, conf[:, -1:], conf[:, :-1]], -1)[None], 1e-3),
            ("end to end", outs[-1], 1e-2)):
        figures[f"detections ({key}): count, worst box px, worst score"] = \
            match_detections(decode_first(model, heads, size), theirs, box_tol=tol,
                             score_tol=1e-3)
    with capsys.disabled():
        print(f"\n[mmdetection {source}] " + ", ".join(f"{k}: {v}"
                                                     for k, v in figures.items()))

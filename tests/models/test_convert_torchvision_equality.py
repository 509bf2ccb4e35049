"""Converted checkpoints compute what their sources compute (needs torch and
torchvision; skipped without them).

A child process (torch only: importing torch's compiler stack after
TensorFlow can crash a process) builds torchvision's `ssd300_vgg16` with
random weights (91 classes, and a 21-class one for the VOC ports), saves its
state dict with `torch.save` (zip; renamed into amdegroot's keys in the
legacy format, into lufficc's `{"model": ...}` checkpoint), and records for
one 300x300 image: torchvision's normalised input, the six feature maps, the
head outputs, the anchors and `postprocess_detections`' detections. This
process converts the files with `keras_ssd.models.convert` (no torch) and
compares. The VOC ports' own priors and post-processing are re-implemented
in numpy here from their sources (amdegroot/ssd.pytorch `PriorBox`,
`Detect`, `nms`; lufficc/SSD `PriorBox`, `PostProcessor`), fed with the same
torch network's head outputs on their input normalisation (RGB minus 123,
117, 104), since the three networks are layer for layer the same.
"""

import importlib.util

import numpy as np
import pytest

from keras_ssd.anchors import generate_anchors
from keras_ssd.models.convert import convert_checkpoint

from test_convert_checkpoints import caffe_port_prior_box

from benchmarks.torch_reference import (
    decode_first, lufficc_postprocess, match_detections, record_reference, relative,
    softmax)

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None or importlib.util.find_spec("torchvision") is None,
    reason="torch and torchvision not installed")

TORCH_CHILD = r"""
import json, os, sys
import numpy as np
import torch
import torchvision
from torchvision.models.detection import ssd300_vgg16

from benchmarks.torch_reference import (
    raise_class_biases, record_heads, record_torchvision_ssd)

out = sys.argv[1]
torch.manual_seed(0)
rng = np.random.default_rng(0)
# A smooth image with some noise, RGB 0..255, HWC.
yy, xx = np.mgrid[0:300, 0:300] / 300.0
image = np.stack([255 * xx, 255 * yy, 127 + 100 * np.sin(6 * xx * yy)], -1)
image = np.clip(image + rng.normal(0, 20, image.shape), 0, 255).astype(np.float32)
np.save(os.path.join(out, "image.npy"), image)
report = {"torch": torch.__version__, "torchvision": torchvision.__version__}


def push(model, background, classes, loc=None):
    with torch.no_grad():
        raise_class_biases(model.head.classification_head, background, classes)
        if loc is not None:  # a huge width offset: the log-scale cap must act
            head, channel, value = loc
            model.head.regression_head.module_list[head].bias[channel] += value


# ---- torchvision COCO layout: 91 logits
tv = ssd300_vgg16(weights=None, weights_backbone=None).eval()
push(tv, 2.0, {1: 4.0, 3: 3.5, 18: 3.0, 62: 3.0}, loc=(5, 2, 30.0))
report["params"] = sum(p.numel() for p in tv.parameters())
report["categories"] = list(
    torchvision.models.detection.SSD300_VGG16_Weights.COCO_V1.meta["categories"])
torch.save(tv.state_dict(), os.path.join(out, "torchvision.pth"))
heads, arrays, uncut = record_torchvision_ssd(tv, image, torch, "tv_")
report["tv_detections"] = len(arrays["tv_det_boxes"])
# is there a tie at the 200 cut?
report["tv_uncut"] = int(uncut.size)
report["tv_gap"] = float(uncut[199] - uncut[200]) if uncut.size > 200 else None
# the candidates torchvision's NMS saw (score > 0.01, top 400 per class)
probs = torch.softmax(heads["cls_logits"][0], -1)
report["tv_candidates"] = int(sum(min(400, int((probs[:, c] > 0.01).sum()))
                                  for c in range(1, 91)))

# ---- the VOC ports: a 21-class network, renamed
voc = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=21).eval()
push(voc, 1.5, {15: 3.5, 7: 3.0, 12: 2.5})
state = voc.state_dict()
mean = torch.tensor([123.0, 117.0, 104.0]).view(1, 3, 1, 1)
x = torch.from_numpy(image).permute(2, 0, 1)[None] - mean
_, _, more = record_heads(voc, x, torch, "voc_")
arrays.update(more)
np.savez(os.path.join(out, "reference.npz"), **arrays)

features_idx = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21]
extra0 = {"24": "backbone.extra.0.1", "26": "backbone.extra.0.3", "28": "backbone.extra.0.5",
          "31": "backbone.extra.0.7.1", "33": "backbone.extra.0.7.3"}
def renamed(vgg, extras, scale, loc, conf):
    new = {}
    for i in features_idx:
        for p in ("weight", "bias"):
            new[f"{vgg}.{i}.{p}"] = state[f"backbone.features.{i}.{p}"]
    for i, old in extra0.items():
        for p in ("weight", "bias"):
            new[f"{vgg}.{i}.{p}"] = state[f"{old}.{p}"]
    new[scale] = state["backbone.scale_weight"]
    for block in range(4):
        for j, sub in enumerate((0, 2)):
            for p in ("weight", "bias"):
                new[f"{extras}.{2 * block + j}.{p}"] = state[f"backbone.extra.{block + 1}.{sub}.{p}"]
    for i in range(6):
        for p in ("weight", "bias"):
            new[f"{loc}.{i}.{p}"] = state[f"head.regression_head.module_list.{i}.{p}"]
            new[f"{conf}.{i}.{p}"] = state[f"head.classification_head.module_list.{i}.{p}"]
    assert len(new) == len(state)
    return new

amdegroot = renamed("vgg", "extras", "L2Norm.weight", "loc", "conf")
torch.save(amdegroot, os.path.join(out, "amdegroot.pth"), _use_new_zipfile_serialization=False)
lufficc = renamed("backbone.vgg", "backbone.extras", "backbone.l2_norm.weight",
                  "box_head.predictor.reg_headers", "box_head.predictor.cls_headers")
module = torch.nn.Linear(2, 2)
optimizer = torch.optim.SGD(module.parameters(), lr=1e-3, momentum=0.9)
module(torch.ones(1, 2)).sum().backward()
optimizer.step()
scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [80000, 100000])
torch.save({"model": lufficc, "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "iteration": 120000},
           os.path.join(out, "lufficc.pth"))
with open(os.path.join(out, "report.json"), "w") as f:
    json.dump(report, f)
"""


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("torch_ssd300")
    report, arrays = record_reference(TORCH_CHILD, out)
    return out, report, arrays, np.load(out / "image.npy")


SOURCE_MAPS = ["conv4_3_norm", "fc7", "conv6_2", "conv7_2", "conv8_2", "conv9_2"]


def run_model(model, image):
    """The preprocessed input, six feature maps and predictions of `model`."""
    import keras

    probe = keras.Model(model.input, [model.get_layer("preprocessing").output]
                        + [model.get_layer(n).output for n in SOURCE_MAPS] + [model.output])
    outs = [np.asarray(o) for o in probe(image[None])]
    return outs[0], outs[1:7], outs[7]


def check_network(model, image, ref, prefix, figures):
    pre, features, predictions = run_model(model, image)
    if prefix + "input" in ref:
        rel, diff = relative(pre, ref[prefix + "input"])
        figures["input"] = (diff, rel)
        assert diff < 1e-4
    for i, (ours, name) in enumerate(zip(features, SOURCE_MAPS)):
        rel, diff = relative(ours, ref[f"{prefix}feature{i}"])
        figures[name] = (diff, rel)
        assert rel < 1e-4, (name, rel, figures)
    for part, ours in (("loc", predictions[0, :, :4]), ("conf", predictions[0, :, 4:])):
        rel, diff = relative(ours, ref[prefix + part][0])
        figures[part] = (diff, rel)
        assert rel < 1e-4, (part, rel)
    return predictions


# ---------------------------------------------------------------- torchvision
def test_torchvision_conversion_equals_torchvision(reference, capsys):
    out, report, ref, image = reference
    model = convert_checkpoint(out / "torchvision.pth")
    figures = {}
    assert model.count_params() == report["params"] == 35_641_826
    # class names: torchvision's categories, 'N/A' renamed uniquely
    cats = report["categories"]
    assert [("N/A" if n.startswith("N/A-") else n) for n in model.class_names] == cats[1:]
    # priors: torchvision's default boxes (cx, cy, w, h) and its pixel anchors
    priors = generate_anchors(model.config)
    figures["priors"] = float(np.abs(priors - ref["tv_default_boxes"]).max())
    assert figures["priors"] < 1e-6
    a = ref["tv_anchors"] / 300.0
    from_anchors = np.stack([(a[:, 0] + a[:, 2]) / 2, (a[:, 1] + a[:, 3]) / 2,
                             a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]], 1)
    assert np.abs(priors - from_anchors).max() < 1e-6
    predictions = check_network(model, image, ref, "tv_", figures)
    # the detections of postprocess_detections (same as the full forward)
    np.testing.assert_array_equal(ref["tv_det_labels"], ref["tv_full_labels"])
    if report["tv_detections"] == 200:  # the top_k cut acted: no tie there
        assert report["tv_gap"] is not None and report["tv_gap"] > 1e-6
        figures["score gap at the 200 cut"] = report["tv_gap"]
        figures["detections before the cut"] = report["tv_uncut"]
    theirs = (ref["tv_det_boxes"], ref["tv_det_scores"], ref["tv_det_labels"] - 1)
    # The decoder on torchvision's own head outputs: the post-processing alone.
    heads = np.concatenate([ref["tv_loc"], ref["tv_conf"]], -1)
    figures["detections from torch's heads"] = match_detections(
        decode_first(model, heads, 300.0), theirs, 1e-3)
    # End to end: the converted network's outputs through the decoder. Random
    # weights give box offsets up to |predictions| of several tens, so the
    # networks' float32 rounding alone moves big boxes by up to ~1e-3 px.
    figures["detections end to end"] = match_detections(
        decode_first(model, predictions, 300.0), theirs, 1e-2)
    # the log-scale cap and the clip acted on some boxes
    assert np.any(ref["tv_det_boxes"] == 300.0) and np.any(ref["tv_det_boxes"] == 0.0)
    with capsys.disabled():
        print(f"\n[torchvision] candidates {report['tv_candidates']}, " + ", ".join(
            f"{k}: {v}" for k, v in figures.items()))


# ------------------------------------------------------- the VOC ports (numpy)
def amdegroot_detect(loc, conf, priors, top_k=200, conf_thresh=0.01, nms_thresh=0.45):
    """amdegroot's `Detect.forward` + `box_utils.decode` + `box_utils.nms`:
    per class, scores > thresh, the best `top_k` (ascending sort, last k),
    greedy NMS keeping IoU <= thresh; up to `top_k` per class, no image cut."""
    boxes = np.concatenate([priors[:, :2] + loc[:, :2] * 0.1 * priors[:, 2:],
                            priors[:, 2:] * np.exp(loc[:, 2:] * 0.2)], 1)
    boxes[:, :2] -= boxes[:, 2:] / 2
    boxes[:, 2:] += boxes[:, :2]
    scores = softmax(conf)
    out = []
    for cl in range(1, scores.shape[1]):
        mask = scores[:, cl] > conf_thresh
        s, b = scores[mask, cl], boxes[mask]
        if s.size == 0:
            continue
        x1, y1, x2, y2 = b.T
        area = (x2 - x1) * (y2 - y1)
        idx = np.argsort(s, kind="stable")[-top_k:]
        keep = []
        while idx.size:
            i = idx[-1]
            keep.append(i)
            idx = idx[:-1]
            if not idx.size:
                break
            w = np.clip(np.minimum(x2[idx], x2[i]) - np.maximum(x1[idx], x1[i]), 0, None)
            h = np.clip(np.minimum(y2[idx], y2[i]) - np.maximum(y1[idx], y1[i]), 0, None)
            inter = w * h
            iou = inter / ((area[idx] - inter) + area[i])
            idx = idx[iou <= nms_thresh]
        for i in keep[:top_k]:
            out.append((b[i], s[i], cl - 1))
    return [np.array([o[k] for o in out]) for k in range(3)]


@pytest.mark.parametrize("source", ["amdegroot", "lufficc"])
def test_voc_port_conversion_equals_its_source(reference, source, capsys):
    out, _, ref, image = reference
    model = convert_checkpoint(out / f"{source}.pth")
    assert model.num_classes == 20 and model.class_names[14] == "person"
    figures = {}
    ref_priors = caffe_port_prior_box()
    priors = generate_anchors(model.config)
    figures["priors"] = float(np.abs(priors - ref_priors).max())
    assert figures["priors"] < 1e-6
    predictions = check_network(model, image, ref, "voc_", figures)
    loc, conf = ref["voc_loc"][0].astype(np.float64), ref["voc_conf"][0].astype(np.float64)
    if source == "amdegroot":
        b, s, l = amdegroot_detect(loc, conf, ref_priors.astype(np.float64))
        theirs = (b * 300.0, s, l)
    else:
        theirs, gap = lufficc_postprocess(loc, conf, ref_priors.astype(np.float64))
        assert gap is not None and gap > 1e-5  # the 100 cut is exercised, without a tie
        figures["score gap at the 100 cut"] = gap
    heads = np.concatenate([ref["voc_loc"], ref["voc_conf"]], -1)
    figures["detections from torch's heads"] = match_detections(
        decode_first(model, heads, 300.0), theirs, 1e-3)
    figures["detections end to end"] = match_detections(
        decode_first(model, predictions, 300.0), theirs, 1e-2)
    with capsys.disabled():
        print(f"\n[{source}] " + ", ".join(f"{k}: {v}" for k, v in figures.items()))

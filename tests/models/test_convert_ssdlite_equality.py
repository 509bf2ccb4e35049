"""The converted SSDLite320 computes what torchvision's
`ssdlite320_mobilenet_v3_large` computes (needs torch and torchvision;
skipped without them).

A child process (torch only: importing torch's compiler stack after
TensorFlow can crash a process) builds the network with random weights
*and random batch-norm statistics* (91 outputs, reduced tail as for the
published weights), raises a few class biases (and pushes two box offsets
out of range, so that the log-scale cap and the clip to the image act,
zero-area boxes included), saves the state dict with `torch.save` and
records, on a real photo (scikit-image's astronaut, resized to 320 x 320
here): torchvision's normalised input, the six feature maps, the head
outputs, the anchors and `postprocess_detections`' detections. This process
converts the file with `keras_ssd.models.convert` (no torch) and compares.
"""

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

from keras_ssd.anchors import generate_anchors
from keras_ssd.models.convert import convert_checkpoint

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None or importlib.util.find_spec("torchvision") is None,
    reason="torch and torchvision not installed")

SIZE = 320

TORCH_CHILD = r"""
import json, os, sys
import numpy as np
import torch
import torchvision
from torchvision.models.detection import ssdlite320_mobilenet_v3_large
from torchvision.models.detection.ssdlite import SSDLite320_MobileNet_V3_Large_Weights

out = sys.argv[1]
torch.manual_seed(0)
image = np.load(os.path.join(out, "image.npy"))
model = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None,
                                      num_classes=91).eval()
generator = torch.Generator().manual_seed(1)
with torch.no_grad():
    for m in model.modules():
        # torchvision's own init (normal, std 0.03) all but erases the image
        # by the last maps (scores then tie across cells); a fan-in scaled
        # normal keeps it
        if isinstance(m, torch.nn.Conv2d):
            fan_in = m.weight[0].numel()
            m.weight.copy_(torch.randn(m.weight.shape, generator=generator)
                           * (1.5 / fan_in) ** 0.5)
            if m.bias is not None:
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=generator))
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.weight.copy_(0.5 + torch.rand(n, generator=generator))
            m.bias.copy_(0.2 * torch.randn(n, generator=generator))
            m.running_mean.copy_(0.2 * torch.randn(n, generator=generator))
            m.running_var.copy_(0.5 + torch.rand(n, generator=generator))
            m.num_batches_tracked.fill_(1000)
    k = model.head.classification_head.num_columns
    for block in model.head.classification_head.module_list:
        bias = block[1].bias.view(-1, k)
        bias[:, 0] += 4.0
        for c, up in {1: 3.0, 3: 2.5, 18: 2.0, 62: 2.0}.items():
            bias[:, c] += up
    # a huge width offset (the log-scale cap) and a centre far outside the
    # image (a box clipped to zero area)
    model.head.regression_head.module_list[4][1].bias[2] += 30.0
    model.head.regression_head.module_list[0][1].bias[0] += 60.0
report = {"torch": torch.__version__, "torchvision": torchvision.__version__,
          "params": sum(p.numel() for p in model.parameters()),
          "categories": list(SSDLite320_MobileNet_V3_Large_Weights.COCO_V1.meta["categories"]),
          "num_params": SSDLite320_MobileNet_V3_Large_Weights.COCO_V1.meta["num_params"],
          "url": SSDLite320_MobileNet_V3_Large_Weights.COCO_V1.url}
torch.save(model.state_dict(), os.path.join(out, "ssdlite.pth"))
tensor = torch.from_numpy(image).permute(2, 0, 1) / 255.0
with torch.no_grad():
    images, _ = model.transform([tensor])
    features = list(model.backbone(images.tensors).values())
    heads = model.head(features)
    arrays = {"input": images.tensors.permute(0, 2, 3, 1).numpy(),
              "loc": heads["bbox_regression"].numpy(), "conf": heads["cls_logits"].numpy()}
    for i, f in enumerate(features):
        arrays[f"feature{i}"] = f.permute(0, 2, 3, 1).numpy()
    anchors = model.anchor_generator(images, features)
    arrays["anchors"] = anchors[0].numpy()
    grid = [list(f.shape[-2:]) for f in features]
    arrays["default_boxes"] = model.anchor_generator._grid_default_boxes(
        grid, [320, 320], dtype=torch.float32).numpy()
    dets = model.postprocess_detections(heads, anchors, images.image_sizes)[0]
    full = model([tensor])[0]
    for key in ("boxes", "scores", "labels"):
        arrays["det_" + key] = dets[key].numpy()
        arrays["full_" + key] = full[key].numpy()
    model.detections_per_img = 10 ** 6
    uncut = model.postprocess_detections(heads, anchors, images.image_sizes)[0]["scores"]
    uncut = uncut.numpy()
report["detections"] = int(dets["boxes"].shape[0])
report["uncut"] = int(uncut.size)
report["gap"] = float(uncut[299] - uncut[300]) if uncut.size > 300 else None
np.savez(os.path.join(out, "reference.npz"), **arrays)
with open(os.path.join(out, "report.json"), "w") as f:
    json.dump(report, f)
"""

#: keras-ssd's layers whose outputs are torchvision's six feature maps.
SOURCE_MAPS = ["block13_expand_act", "last_conv_act"] + [f"extra{j}_act" for j in range(1, 5)]


def astronaut_320():
    """scikit-image's astronaut photo as RGB float32 320 x 320 (bilinear)."""
    from PIL import Image

    data = pytest.importorskip("skimage.data")  # the photo (the `bench` extra)
    photo = Image.fromarray(data.astronaut()).resize((SIZE, SIZE), Image.BILINEAR)
    return np.asarray(photo, dtype=np.float32)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("torch_ssdlite")
    image = astronaut_320()
    np.save(out / "image.npy", image)
    result = subprocess.run([sys.executable, "-c", TORCH_CHILD, str(out)],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    with open(out / "report.json") as f:
        report = json.load(f)
    return out, report, dict(np.load(out / "reference.npz")), image


def relative(ours, ref):
    """max |ours - ref| / max |ref| and max |ours - ref|."""
    diff = float(np.abs(np.asarray(ours, np.float64) - ref).max())
    return diff / float(np.abs(ref).max()), diff


def decode(model, predictions):
    from keras_ssd.layers.decode_detections import DecodeDetections

    out = DecodeDetections(model.config, **model.postprocessing)(predictions)
    n = int(out["num_detections"][0])
    return (np.asarray(out["boxes"][0, :n]) * SIZE, np.asarray(out["scores"][0, :n]),
            np.asarray(out["labels"][0, :n]))


def match(ours, theirs, box_tol, score_tol=1e-3):
    """Same count; each reference detection has its own one of ours with the
    same label, the box within `box_tol` px and the score within
    `score_tol`. Returns (count, worst box error, worst score error)."""
    (ob, os_, ol), (tb, ts, tl) = ours, theirs
    assert len(ob) == len(tb) > 0, (len(ob), len(tb))
    used = np.zeros(len(ob), bool)
    worst_box = worst_score = 0.0
    for box, score, label in zip(tb, ts, tl):
        err = np.abs(ob - box).max(axis=1)
        err[(ol != label) | used | (np.abs(os_ - score) > score_tol)] = np.inf
        j = int(np.argmin(err))
        assert err[j] < box_tol, (label, score, box, err[j])
        used[j] = True
        worst_box = max(worst_box, float(err[j]))
        worst_score = max(worst_score, abs(float(os_[j]) - float(score)))
    return len(tb), worst_box, worst_score


def test_ssdlite_conversion_equals_torchvision(reference, capsys):
    import keras

    out, report, ref, image = reference
    model = convert_checkpoint(out / "ssdlite.pth")
    figures = {}
    assert model.architecture == "ssdlite320"
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == report["params"] == report["num_params"] == 3_440_060
    assert [("N/A" if n.startswith("N/A-") else n) for n in model.class_names] == \
        report["categories"][1:]
    # priors: torchvision's default boxes and its pixel anchors
    priors = generate_anchors(model.config)
    figures["priors (px)"] = float(np.abs(priors - ref["default_boxes"]).max()) * SIZE
    assert figures["priors (px)"] < 1e-5
    a = ref["anchors"]
    ours = np.concatenate([priors[:, :2] - priors[:, 2:] / 2,
                           priors[:, :2] + priors[:, 2:] / 2], 1) * SIZE
    figures["anchors (px)"] = float(np.abs(ours - a).max())
    assert figures["anchors (px)"] < 1e-4
    assert ref["default_boxes"][:, 2:].max() == 1.0  # the clip acts
    # the network: input, six maps, head outputs
    probe = keras.Model(model.input, [model.get_layer("preprocessing").output]
                        + [model.get_layer(n).output for n in SOURCE_MAPS] + [model.output])
    outs = [np.asarray(o) for o in probe(image[None])]
    rel, diff = relative(outs[0], ref["input"])
    figures["input"] = diff
    assert diff < 1e-5
    for i, name in enumerate(SOURCE_MAPS):
        figures[name] = relative(outs[1 + i], ref[f"feature{i}"])[0]
        assert figures[name] < 1e-4, (name, figures)
    predictions = outs[-1]
    for part, got in (("loc", predictions[0, :, :4]), ("conf", predictions[0, :, 4:])):
        figures[f"{part} (relative)"] = relative(got, ref[part][0])[0]
        assert figures[f"{part} (relative)"] < 1e-4, (part, figures)
    # detections: postprocess_detections == the full forward; the 300 cut
    # acted with no tie at it
    np.testing.assert_array_equal(ref["det_labels"], ref["full_labels"])
    assert report["detections"] == 300 and report["gap"] > 1e-6, report
    figures["score gap at the 300 cut"] = report["gap"]
    theirs = (ref["det_boxes"], ref["det_scores"], ref["det_labels"] - 1)
    heads = np.concatenate([ref["loc"], ref["conf"]], -1)
    figures["detections from torch's heads"] = match(decode(model, heads), theirs, 1e-3)
    figures["detections end to end"] = match(decode(model, predictions), theirs, 1e-2)
    boxes = ref["det_boxes"]
    assert np.any(boxes == 0.0) and np.any(boxes == SIZE)
    zero_area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) == 0
    assert zero_area.any()
    figures["zero-area detections"] = int(zero_area.sum())
    with capsys.disabled():
        print(f"\n[torchvision ssdlite320] candidates before the cut {report['uncut']}, "
              + ", ".join(f"{k}: {v}" for k, v in figures.items()))

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

import numpy as np
import pytest

from benchmarks.torch_reference import compare_priors, match_decoded, relative
from keras_ssd.models.convert import convert_checkpoint

SIZE = 320

TORCH_CHILD = r"""
import json, os, sys
import numpy as np
import torch
import torchvision
from torchvision.models.detection import ssdlite320_mobilenet_v3_large
from torchvision.models.detection.ssdlite import SSDLite320_MobileNet_V3_Large_Weights

from benchmarks.torch_reference import record_torchvision_ssd, stand_in_weights

out = sys.argv[1]
torch.manual_seed(0)
image = np.load(os.path.join(out, "image.npy"))
model = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None,
                                      num_classes=91).eval()
stand_in_weights(model, torch, seed=1, background=4.0,
                 classes={1: 3.0, 3: 2.5, 18: 2.0, 62: 2.0})
with torch.no_grad():
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
_, arrays, uncut = record_torchvision_ssd(model, image, torch)
report["detections"] = len(arrays["det_boxes"])
report["uncut"] = int(uncut.size)
report["gap"] = float(uncut[299] - uncut[300]) if uncut.size > 300 else None
np.savez(os.path.join(out, "reference.npz"), **arrays)
with open(os.path.join(out, "report.json"), "w") as f:
    json.dump(report, f)
"""

#: keras-ssd's layers whose outputs are torchvision's six feature maps.
SOURCE_MAPS = ["block13_expand_act", "last_conv_act"] + [f"extra{j}_act" for j in range(1, 5)]


@pytest.fixture(scope="module")
def reference(torch_photo_reference):
    return torch_photo_reference(TORCH_CHILD, SIZE, "torch_ssdlite",
                                 needs=("torch", "torchvision"))


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
    priors = compare_priors(model, ref["default_boxes"], SIZE, figures)
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
    match_decoded(model, heads, predictions, theirs, SIZE, figures, "torch")
    boxes = ref["det_boxes"]
    assert np.any(boxes == 0.0) and np.any(boxes == SIZE)
    zero_area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) == 0
    assert zero_area.any()
    figures["zero-area detections"] = int(zero_area.sum())
    with capsys.disabled():
        print(f"\n[torchvision ssdlite320] candidates before the cut {report['uncut']}, "
              + ", ".join(f"{k}: {v}" for k, v in figures.items()))

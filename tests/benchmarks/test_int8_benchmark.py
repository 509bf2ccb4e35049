"""benchmarks/int8.py: its detection-agreement count, its default output
folder and its argument checks (the benchmark itself trains and exports, so
it is run by hand: `python -m benchmarks.int8`)."""

import pathlib
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `benchmarks` lives at the repository root
    sys.path.insert(0, str(ROOT))

from benchmarks import int8  # noqa: E402


def dets(boxes, scores, labels):
    return {"boxes": np.asarray(boxes, np.float32).reshape(-1, 4),
            "scores": np.asarray(scores, np.float32),
            "labels": np.asarray(labels, np.int64)}


def test_agreement_counts_same_label_overlapping_detections_once():
    float_dets = [
        dets([[0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 10, 10]], [0.9, 0.8, 0.3],
             [0, 1, 0]),
        dets([[5, 5, 15, 15]], [0.95], [2]),
        dets([], [], []),
    ]
    int8_dets = [
        # the first box again (IoU 0.9), the second with the wrong label
        dets([[0, 0, 10, 9], [20, 20, 30, 30]], [0.85, 0.7], [0, 0]),
        dets([[5, 5, 15, 15], [5, 5, 15, 15]], [0.4, 0.9], [2, 2]),  # only 0.9 counts
        dets([[0, 0, 1, 1]], [0.99], [0]),  # extra int8 detections are not counted
    ]
    share, total = int8.agreement(float_dets, int8_dets)
    assert total == 3  # float detections above 0.5
    assert share == pytest.approx(2 / 3)
    # one int8 detection cannot match two float ones
    twice = [dets([[0, 0, 10, 10], [0, 0, 10, 10]], [0.9, 0.9], [0, 0])]
    once = [dets([[0, 0, 10, 10]], [0.9], [0])]
    assert int8.agreement(twice, once) == (0.5, 2)
    assert np.isnan(int8.agreement([dets([], [], [])], [dets([], [], [])])[0])


def test_agreement_at_a_lower_score_counts_detections_at_the_threshold():
    float_dets = [dets([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]],
                       [0.3, 0.6, 0.29], [1, 1, 1])]
    int8_dets = [dets([[0, 0, 10, 10], [20, 20, 30, 31], [40, 40, 50, 50]],
                      [0.35, 0.52, 0.31], [1, 1, 1])]
    # 0.3 is in, 0.29 is out; both int8 partners score at least 0.3
    assert int8.agreement(float_dets, int8_dets, score=0.3) == (1.0, 2)
    # at 0.55 only the 0.6 detection counts, and its int8 partner (0.52)
    # falls below the threshold: not reproduced
    assert int8.agreement(float_dets, int8_dets, score=0.55) == (0.0, 1)


def test_score_drift_is_the_median_and_largest_change_of_kept_detections():
    float_dets = [dets([[0, 0, 10, 10], [20, 20, 30, 30]], [0.3, 0.6], [1, 2]),
                  dets([[0, 0, 10, 10]], [0.9], [1])]
    int8_dets = [dets([[0, 0, 10, 10], [20, 20, 30, 30]], [0.35, 0.52], [1, 2]),
                 dets([[0, 0, 10, 10]], [0.88], [1])]
    median, largest = int8.score_drift(float_dets, int8_dets, score=0.3)
    assert median == pytest.approx(0.05, abs=1e-6)  # drifts 0.05, 0.08, 0.02
    assert largest == pytest.approx(0.08, abs=1e-6)
    # a detection int8 misses (other label) has no drift
    missed = [dets([[0, 0, 10, 10]], [0.9], [2])]
    assert all(np.isnan(v) for v in int8.score_drift(float_dets[1:], missed))


def test_results_go_outside_the_tree_and_model_needs_data(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KERAS_SSD_BENCHMARKS_DIR", str(tmp_path / "b"))
    assert int8.default_out() == str(tmp_path / "b" / "int8")
    with pytest.raises(SystemExit) as info:
        int8.main(["--model", "m.keras"])
    assert info.value.code == 2
    assert "--model and --data go together" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        int8.main(["--agreement-score", "0"])
    assert "--agreement-score must be in (0, 1]" in capsys.readouterr().err

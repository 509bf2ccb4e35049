"""keras_ssd.accel.machine and the choices that follow it: the CPU read from
/proc/cpuinfo, its kind, the per-machine tuning cache, and the Winograd tile
rule forced through each case (table, measured with a fake timer, cached,
corrupt cache, unwritable cache, off)."""

import json
import warnings

import numpy as np
import pytest

import keras

from keras_ssd.accel import machine, runtime, winograd_conv
from keras_ssd.accel.winograd_conv import WinogradConv2D, auto_tile

requires_tf = pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                                 reason="the Winograd path is TensorFlow-only")

ZEN4 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC 9R14 96-Core Processor
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512dq avx512bw avx512vl avx512_bf16 avx512_vnni avx512vbmi

processor\t: 1
vendor_id\t: GenuineIntel
model name\t: not the first CPU
"""
ZEN5 = ZEN4.replace("cpu family\t: 25", "cpu family\t: 26").replace(
    "model\t\t: 17", "model\t\t: 2").replace("AMD EPYC 9R14 96-Core Processor", "AMD EPYC")
AVX2 = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 79
model name\t: Intel(R) Xeon(R) CPU E5-2686 v4 @ 2.30GHz
flags\t\t: fpu sse2 avx avx2 fma f16c
"""
SAPPHIRE = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 143
model name\t: Intel(R) Xeon(R) Platinum 8488C
flags\t\t: avx2 fma avx512f avx512bw avx512vl avx512_vnni avx512_bf16 avx512_fp16 amx_bf16 amx_tile amx_int8
"""
SKYLAKE = AVX2.replace("f16c", "avx512f avx512bw avx512vl").replace("E5-2686 v4", "Gold 6148")
ARM = """processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd bf16 sve
CPU implementer\t: 0x41
"""


# ------------------------------------------------------------- CPU kinds
@pytest.mark.parametrize("text, arch, kind, native", [
    (ZEN4, "x86_64", "x86-avx512-bf16", True),
    (ZEN5, "x86_64", "x86-avx512-bf16", True),
    (SAPPHIRE, "x86_64", "x86-avx512-bf16-amx", True),
    (SKYLAKE, "x86_64", "x86-avx512", False),
    (AVX2, "x86_64", "x86-avx2", False),
    (AVX2.replace(" avx2 fma", ""), "x86_64", "other", False),
    (ARM, "aarch64", "other", False),
    ("", "x86_64", "other", False),
])
def test_each_cpu_kind_from_its_cpuinfo(text, arch, kind, native):
    features = machine.parse_cpuinfo(text, arch=arch)
    assert machine.kind_of(features) == kind
    assert machine.native_bfloat16(kind) is native


def test_cpuinfo_fields_come_from_the_first_processor_only():
    features = machine.parse_cpuinfo(ZEN4, arch="x86_64")
    assert features.vendor == "AuthenticAMD"
    assert features.model_name == "AMD EPYC 9R14 96-Core Processor"
    assert (features.family, features.model) == (25, 17)
    # Only the flags that decide a kind are kept.
    assert features.flags == frozenset(
        {"avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_bf16", "avx512_vnni"})
    assert json.loads(json.dumps(features.as_dict()))["flags"] == sorted(features.flags)
    with pytest.raises(Exception):
        features.vendor = "x"  # frozen


def test_no_cpuinfo_gives_an_empty_description_not_a_crash(monkeypatch):
    def unreadable(*args, **kwargs):
        raise OSError("no /proc here")

    monkeypatch.setattr(machine, "open", unreadable, raising=False)
    features = machine.cpu_features.__wrapped__()
    assert features.flags == frozenset() and features.family is None
    assert machine.kind_of(features) == "other"


def test_this_machine_is_described_with_its_kind_and_flags(monkeypatch):
    monkeypatch.delenv(machine.KIND_ENV, raising=False)
    features = machine.cpu_features()
    assert machine.cpu_features() is features  # read once
    kind = machine.machine_kind()
    assert kind in machine.KINDS and kind == machine.kind_of(features)
    line = machine.describe()
    assert features.model_name in line and f"kind {kind};" in line
    data = json.loads(json.dumps(machine.features_dict()))
    assert data["kind"] == kind and data["native_bfloat16"] == machine.native_bfloat16()


def test_the_kind_env_overrides_detection_and_native_bf16(monkeypatch):
    # an override that differs from what this CPU is detected as (the note
    # in describe() marks only a kind that differs)
    detected = machine.kind_of(machine.cpu_features())
    other = "x86-avx512" if detected == "x86-avx2" else "x86-avx2"
    monkeypatch.setenv(machine.KIND_ENV, other)
    assert machine.machine_kind() == other
    assert not machine.native_bfloat16()
    assert "set by KERAS_SSD_CPU_KIND" in machine.describe()
    monkeypatch.setenv(machine.KIND_ENV, "x86-avx512-bf16-amx")
    assert machine.native_bfloat16()
    monkeypatch.setenv(machine.KIND_ENV, "../../etc")
    with pytest.raises(ValueError, match=machine.KIND_ENV):
        machine.machine_kind()


# ------------------------------------------------------------ tuning cache
@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """An empty keras-ssd cache folder, nothing of it in memory, and no
    forcing of the Winograd rule."""
    monkeypatch.setenv(machine.CACHE_ENV, str(tmp_path))
    monkeypatch.delenv(winograd_conv.WINOGRAD_ENV, raising=False)
    monkeypatch.setenv(runtime.DEVICE_ENV, "cpu")
    machine.forget_tuning_caches()
    yield tmp_path
    machine.forget_tuning_caches()


def test_the_cache_lives_under_the_cache_dir_per_kind(cache_dir, monkeypatch):
    assert machine.tuning_path("x86-avx2") == str(cache_dir / "tuning" / "x86-avx2.json")
    monkeypatch.delenv(machine.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache_dir / "xdg"))
    assert machine.cache_dir() == str(cache_dir / "xdg" / "keras_ssd")


def test_records_are_written_and_read_back_by_a_new_cache(cache_dir):
    machine.TuningCache("x86-avx2").put("winograd", "k", {"tile": 4})
    data = json.loads((cache_dir / "tuning" / "x86-avx2.json").read_text())
    assert data["format"] == 1 and data["kind"] == "x86-avx2"
    fresh = machine.TuningCache("x86-avx2")
    assert fresh.get("winograd", "k") == {"tile": 4}
    assert fresh.get("winograd", "other") is None
    # Another process's records survive a write (merged, not overwritten).
    machine.TuningCache("x86-avx2").put("winograd", "k2", {"tile": 2})
    fresh.put("winograd", "k3", {"tile": 0})
    assert machine.TuningCache("x86-avx2").get("winograd", "k2") == {"tile": 2}


@pytest.mark.parametrize("content, message", [
    ("{not json", "unreadable"),
    ('{"format": 1, "cpus": [1, 2]}', "not a tuning cache"),
    ('{"format": 1, "cpus": {"cpu": {"winograd": {"k": 4}}}}', "not a tuning cache"),
])
def test_a_corrupt_cache_file_warns_and_counts_as_empty(cache_dir, content, message):
    path = cache_dir / "tuning" / "x86-avx2.json"
    path.parent.mkdir()
    path.write_text(content)
    cache = machine.TuningCache("x86-avx2")
    with pytest.warns(RuntimeWarning, match=message):
        assert cache.get("winograd", "k") is None
    cache.put("winograd", "k", {"tile": 2})  # replaces the bad file
    assert machine.TuningCache("x86-avx2").get("winograd", "k") == {"tile": 2}


def test_an_unwritable_cache_warns_once_and_keeps_records_in_memory(cache_dir, monkeypatch):
    blocker = cache_dir / "a file"
    blocker.write_text("")
    monkeypatch.setenv(machine.CACHE_ENV, str(blocker))  # tuning/ cannot be made
    cache = machine.TuningCache("x86-avx2")
    with pytest.warns(RuntimeWarning, match="could not write its tuning cache"):
        cache.put("winograd", "k", {"tile": 4})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cache.put("winograd", "k2", {"tile": 2})
    assert cache.get("winograd", "k") == {"tile": 4}


# ------------------------------------------------- the Winograd tile rule
SSD300_SHAPES = [(300, 64, 64), (150, 128, 128), (75, 256, 256), (38, 512, 512),
                 (19, 512, 512)]


class FakeTimer:
    """Stands in for `measure_candidates`: the `winner` gets 10 ms, the
    others 20 ms (or the figures given); counts the shapes it timed."""

    def __init__(self, winner="F4", figures=None):
        self.figures = figures or {name: 10.0 if name == winner else 20.0
                                   for name in ("direct", "F2", "F4")}
        self.shapes = []

    def __call__(self, height, width, in_channels, out_channels):
        self.shapes.append((height, width, in_channels, out_channels))
        return dict(self.figures)


def _fake(monkeypatch, timer):
    monkeypatch.setattr(winograd_conv, "measure_candidates", timer)
    return timer


def test_the_table_kind_uses_the_measured_table_without_timing(cache_dir, monkeypatch):
    monkeypatch.setenv(machine.KIND_ENV, "x86-avx512-bf16")
    timer = _fake(monkeypatch, FakeTimer("direct"))
    assert winograd_conv.tile_source() == "table"
    for side, cin, cout in SSD300_SHAPES:
        assert auto_tile(side, side, cin, cout) == winograd_conv.table_tile(side, side, cin, cout)
    assert timer.shapes == [] and not (cache_dir / "tuning").exists()


@pytest.mark.parametrize("winner, tile", [("direct", 0), ("F2", 2), ("F4", 4)])
def test_an_avx2_kind_measures_and_takes_the_fastest(cache_dir, monkeypatch, winner, tile):
    monkeypatch.setenv(machine.KIND_ENV, "x86-avx2")
    timer = _fake(monkeypatch, FakeTimer(winner))
    assert winograd_conv.tile_source() == "measure"
    assert auto_tile(38, 38, 256, 512) == tile
    assert timer.shapes == [(38, 38, 256, 512)]
    data = json.loads((cache_dir / "tuning" / "x86-avx2.json").read_text())
    (records,) = data["cpus"].values()
    key = winograd_conv.shape_key(38, 38, 256, 512)
    assert records["winograd"][key]["tile"] == tile
    assert records["winograd"][key]["ms"][winner] == 10.0


def test_a_measured_choice_is_read_back_not_measured_again(cache_dir, monkeypatch):
    monkeypatch.setenv(machine.KIND_ENV, "x86-avx2")
    timer = _fake(monkeypatch, FakeTimer("F2"))
    assert auto_tile(75, 75, 256, 256) == 2
    assert auto_tile(75, 75, 256, 256) == 2          # in memory
    machine.forget_tuning_caches()                    # as a new process
    _fake(monkeypatch, FakeTimer("F4"))               # would now say F4
    assert auto_tile(75, 75, 256, 256) == 2           # from the file
    assert timer.shapes == [(75, 75, 256, 256)]
    # Another kind has its own file, so it measures for itself.
    monkeypatch.setenv(machine.KIND_ENV, "other")
    assert auto_tile(75, 75, 256, 256) == 4


def test_winograd_must_beat_the_direct_convolution_by_the_margin(cache_dir, monkeypatch):
    monkeypatch.setenv(machine.KIND_ENV, "x86-avx2")
    _fake(monkeypatch, FakeTimer(figures={"direct": 10.0, "F2": 9.8, "F4": 12.0}))
    assert auto_tile(38, 38, 256, 512) == 0  # 2% is noise
    assert winograd_conv.choose_tile({"direct": 10.0, "F2": 9.0, "F4": 8.0}) == 4
    assert winograd_conv.choose_tile({"direct": 10.0, "F2": 9.0, "F4": 9.6}) == 2


def test_small_shapes_stay_direct_without_measuring(cache_dir, monkeypatch):
    monkeypatch.setenv(machine.KIND_ENV, "x86-avx2")
    timer = _fake(monkeypatch, FakeTimer("F4"))
    assert auto_tile(75, 75, 16, 256) == 0
    assert auto_tile(75, 75, 256, 8) == 0
    assert auto_tile(4, 4, 512, 512) == 0
    assert timer.shapes == []


def test_a_corrupt_cache_file_is_measured_again_and_replaced(cache_dir, monkeypatch):
    monkeypatch.setenv(machine.KIND_ENV, "x86-avx2")
    path = cache_dir / "tuning" / "x86-avx2.json"
    path.parent.mkdir()
    path.write_text("\x00garbage")
    timer = _fake(monkeypatch, FakeTimer("F4"))
    with pytest.warns(RuntimeWarning, match="unreadable"):
        assert auto_tile(150, 150, 128, 128) == 4
    assert len(timer.shapes) == 1
    assert json.loads(path.read_text())["kind"] == "x86-avx2"


def test_an_unwritable_cache_still_measures_once(cache_dir, monkeypatch):
    blocker = cache_dir / "a file"
    blocker.write_text("")
    monkeypatch.setenv(machine.CACHE_ENV, str(blocker))
    monkeypatch.setenv(machine.KIND_ENV, "x86-avx2")
    timer = _fake(monkeypatch, FakeTimer("F2"))
    with pytest.warns(RuntimeWarning, match="could not write"):
        assert auto_tile(38, 38, 256, 512) == 2
    assert auto_tile(38, 38, 256, 512) == 2
    assert len(timer.shapes) == 1


def test_a_failed_measurement_warns_and_stays_direct(cache_dir, monkeypatch):
    monkeypatch.setenv(machine.KIND_ENV, "x86-avx2")
    calls = []

    def broken(*shape):
        calls.append(shape)
        raise RuntimeError("no timer here")

    monkeypatch.setattr(winograd_conv, "measure_candidates", broken)
    with pytest.warns(RuntimeWarning, match="could not time.*no timer here"):
        assert auto_tile(38, 38, 256, 512) == 0
    assert auto_tile(38, 38, 256, 512) == 0
    assert len(calls) == 1
    assert not (cache_dir / "tuning" / "x86-avx2.json").exists()  # not kept


@pytest.mark.parametrize("mode, kind, source", [
    ("off", "x86-avx512-bf16", "off"),
    ("table", "x86-avx2", "table"),
    ("measure", "x86-avx512-bf16", "measure"),
    ("auto", "x86-avx512-bf16-amx", "measure"),
    ("AUTO", "x86-avx512-bf16", "table"),
])
def test_the_winograd_env_forces_the_rule(cache_dir, monkeypatch, mode, kind, source):
    monkeypatch.setenv(machine.KIND_ENV, kind)
    monkeypatch.setenv(winograd_conv.WINOGRAD_ENV, mode)
    timer = _fake(monkeypatch, FakeTimer("F2"))
    assert winograd_conv.tile_source() == source
    expected = {"off": 0, "table": 4, "measure": 2}[source]
    assert auto_tile(75, 75, 256, 256) == expected
    assert len(timer.shapes) == (source == "measure")


def test_a_bad_winograd_env_is_a_clear_error(cache_dir, monkeypatch):
    monkeypatch.setenv(winograd_conv.WINOGRAD_ENV, "fast")
    with pytest.raises(ValueError, match="KERAS_SSD_WINOGRAD must be one of"):
        auto_tile(75, 75, 256, 256)


def _conv_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((24, 24, 256))
    x = keras.layers.Conv2D(128, 3, padding="same", name="c3")(inputs)
    return keras.Model(inputs, x)


@requires_tf
def test_prepare_for_inference_follows_the_machine_rule(cache_dir, monkeypatch):
    from keras_ssd.accel import prepare_for_inference, winograd_tiles

    model = _conv_model()
    monkeypatch.setenv(machine.KIND_ENV, "x86-avx512-bf16")
    assert winograd_tiles(prepare_for_inference(model)) == {"c3": 2}  # the table
    monkeypatch.setenv(machine.KIND_ENV, "x86-avx2")
    timer = _fake(monkeypatch, FakeTimer("F4"))
    fast = prepare_for_inference(model)
    assert winograd_tiles(fast) == {"c3": 4}
    assert timer.shapes == [(24, 24, 256, 128)]
    x = np.random.default_rng(1).normal(size=(1, 24, 24, 256)).astype("float32")
    expected = np.asarray(model.predict_on_batch(x))
    assert np.abs(fast.predict_on_batch(x) - expected).max() <= 1e-4 * np.abs(expected).max()
    monkeypatch.setenv(winograd_conv.WINOGRAD_ENV, "off")
    assert winograd_tiles(prepare_for_inference(model)) == {}
    assert len(timer.shapes) == 1


@requires_tf
def test_winograd_conv2d_auto_follows_the_machine_but_a_forced_tile_stays(cache_dir,
                                                                          monkeypatch):
    monkeypatch.setenv(machine.KIND_ENV, "x86-avx2")
    _fake(monkeypatch, FakeTimer("F4"))
    auto = WinogradConv2D(128, 3, padding="same")
    auto.build((None, 24, 24, 256))
    forced = WinogradConv2D(128, 3, padding="same", winograd_tile=2)
    forced.build((None, 24, 24, 256))
    assert (auto.active_tile, forced.active_tile) == (4, 2)
    monkeypatch.setenv(winograd_conv.WINOGRAD_ENV, "off")
    assert (auto.active_tile, forced.active_tile) == (0, 2)  # explicit beats env


@requires_tf
def test_measure_candidates_times_the_three_paths_here():
    ms = winograd_conv.measure_candidates(8, 8, 32, 32)
    assert set(ms) == {"direct", "F2", "F4"}
    assert all(isinstance(v, float) and v > 0 for v in ms.values())
    assert winograd_conv.choose_tile(ms) in winograd_conv.TILES

"""Exported artifacts carry keras-ssd metadata (input size, letterbox, class
names) in the artifact itself; an artifact without it is one clear error."""

import pytest

from keras_ssd.artifact_metadata import read_metadata, write_metadata


@pytest.fixture(scope="module")
def letterboxed_model():
    import keras

    from keras_ssd.models import SSDTiny

    keras.utils.set_random_seed(0)
    return SSDTiny(class_names=["cat", "dog", "bird"], image_size=(160, 224),
                   letterbox=True)


def test_saved_model_stores_input_size_letterbox_and_class_names(
        letterboxed_model, tmp_path):
    # (ONNX and LiteRT: checked in tests/test_export.py beside their outputs)
    from keras_ssd.export import export

    path = export(letterboxed_model, str(tmp_path / "saved"), format="tf_saved_model",
                  top_k=50, verbose=0)
    meta = read_metadata(path)
    assert meta["image_size"] == [160, 224] and meta["letterbox"] is True
    assert meta["class_names"] == ["cat", "dog", "bird"]
    assert meta["input_dtype"] == "float32" and meta["decode_options"]["top_k"] == 50


def test_artifact_without_metadata_is_one_clear_error(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    path = tmp_path / "other.onnx"
    onnx.save(helper.make_model(graph), path)
    with pytest.raises(ValueError, match=r"other.onnx has no keras-ssd metadata "
                                         r".*export it "
                                         r"again with `keras-ssd export`"):
        read_metadata(path)
    (tmp_path / "saved").mkdir()
    with pytest.raises(ValueError, match="saved has no keras-ssd metadata"):
        read_metadata(tmp_path / "saved")
    with pytest.raises(ValueError, match="not an exported artifact"):
        read_metadata(tmp_path / "model.keras")
    write_metadata(path, {"image_size": [8, 8]})
    with pytest.raises(ValueError, match="lacks letterbox, class_names"):
        read_metadata(path)

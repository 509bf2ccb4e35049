"""What the subcommands share: `--classes`, `--model-file` loading."""

import pytest

from keras_ssd.cli import VOC_CLASSES, CLIError, parse_classes


def test_default_classes_are_the_data_packages_voc_classes():
    from keras_ssd.data import VOC_CLASSES as DATA_VOC_CLASSES

    assert VOC_CLASSES == DATA_VOC_CLASSES


def test_parse_classes_from_list_file_and_default(tmp_path):
    assert parse_classes(None) == list(VOC_CLASSES)
    assert parse_classes("cat, dog,bird") == ["cat", "dog", "bird"]
    path = tmp_path / "classes.txt"
    path.write_text("# my classes\ncat\n\ndog\n")
    assert parse_classes(str(path)) == ["cat", "dog"]
    assert parse_classes("person") == ["person"]


def test_parse_classes_errors(tmp_path):
    with pytest.raises(CLIError, match="class file not found: .*nope.txt"):
        parse_classes(str(tmp_path / "nope.txt"))
    with pytest.raises(CLIError, match="repeats class names: cat"):
        parse_classes("cat,dog,cat")
    with pytest.raises(CLIError, match="empty class name"):
        parse_classes("cat,,dog")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n# nothing\n")
    with pytest.raises(CLIError, match="lists no class names"):
        parse_classes(str(empty))


def test_model_file_that_is_not_a_keras_ssd_model(
        run_cli, assert_one_line_error, synthetic_voc, tmp_path):
    text = tmp_path / "notes.keras"
    text.write_text("hello")
    code, _, err = run_cli("evaluate", "--data", synthetic_voc, "--model-file", str(text))
    assert_one_line_error(code, err, "is not a keras-ssd model", "notes.keras", status=1)

    import keras

    plain = tmp_path / "plain.keras"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(plain)
    code, _, err = run_cli("predict", "--model-file", str(plain), str(text),
                        "--out", str(tmp_path / "out"))
    assert_one_line_error(code, err, "not a keras-ssd", "plain.keras", status=1)

    code, _, err = run_cli("evaluate", "--data", synthetic_voc, "--model-file",
                        str(tmp_path / "missing.keras"))
    assert_one_line_error(code, err, "--model-file: file not found", status=2)

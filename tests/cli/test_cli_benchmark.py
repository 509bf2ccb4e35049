"""`keras-ssd benchmark`: figures at batch 1 and N, with the CPU kind."""

import json


def test_benchmark_reports_batch_1_and_n_with_the_cpu(run_cli, model_file, tmp_path):
    out_json = tmp_path / "bench.json"
    code, out, err = run_cli("benchmark", model_file, "--batch-size", "2", "--runs", "2",
                             "--warmup", "1", "--json", str(out_json))
    assert code == 0, err
    result = json.loads(out_json.read_text())
    assert [r["batch_size"] for r in result["results"]] == [1, 2]
    assert all(r["median_ms"] > 0 and r["images_per_second"] > 0 for r in result["results"])
    assert result["cpu_kind"] and result["input"] == [160, 160]
    assert "CPU: " in out and "kind " in out and "images/s" in out


def test_benchmark_of_an_unknown_model_is_one_line(
        run_cli, assert_one_line_error, tmp_path):
    code, _, err = run_cli("benchmark", str(tmp_path / "nope.keras"))
    assert_one_line_error(code, err,
                          "not a file, an exported artifact or a pretrained preset",
                          status=2)

import json

from evaluation import cli

DATASET = [
    {"id": "r1", "input": "Sentiment: great", "labels": ["positive"]},
    {"id": "r2", "input": "Sentiment: awful", "labels": ["negative"]},
]
OUTPUTS = [
    {"id": "r1", "model": "fm1", "output": "Positive"},
    {"id": "r2", "model": "fm1", "output": "negative"},
    {"id": "r1", "model": "fm2", "output": "negative"},
    {"id": "r2", "model": "fm2", "output": "negative"},
]


def write_lines(path, rows, extra=""):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + extra)
    return path


def test_cli_scores_precomputed_outputs_and_writes_report(tmp_path, capsys):
    data = write_lines(tmp_path / "d.jsonl", DATASET)
    outputs = write_lines(tmp_path / "o.jsonl", OUTPUTS)
    code = cli.main(
        [
            "--dataset",
            str(data),
            "--outputs",
            str(outputs),
            "--report",
            str(tmp_path / "r.html"),
            "--results",
            str(tmp_path / "res.jsonl"),
            "--quiet",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    first, second = [line.split() for line in out.splitlines()[1:3]]
    assert (first[1], first[3]) == ("fm1", "1.000") and (second[1], second[3]) == ("fm2", "0.333")
    assert "<svg" in (tmp_path / "r.html").read_text()
    assert len((tmp_path / "res.jsonl").read_text().splitlines()) == 4


def test_cli_strict_rejects_bad_line_and_skip_reports_it(tmp_path, capsys):
    data = write_lines(tmp_path / "d.jsonl", DATASET, extra='{"id": "r3"}\n')
    outputs = write_lines(tmp_path / "o.jsonl", OUTPUTS)
    assert cli.main(["--dataset", str(data), "--outputs", str(outputs), "--strict"]) == 2
    assert "line 3:" in capsys.readouterr().err
    assert cli.main(["--dataset", str(data), "--outputs", str(outputs), "--skip-bad-lines", "--quiet"]) == 0
    assert "skipped line 3:" in capsys.readouterr().err


def test_cli_gate_failure_exit_code(tmp_path):
    settings = tmp_path / "s.json"
    settings.write_text(json.dumps({"gate": {"min_metrics": {"f1_macro": 1.1}}}))
    data = write_lines(tmp_path / "d.jsonl", DATASET)
    outputs = write_lines(tmp_path / "o.jsonl", OUTPUTS)
    args = ["--dataset", str(data), "--outputs", str(outputs), "--settings", str(settings), "--quiet"]
    assert cli.main([*args, "--gate"]) == 1
    assert cli.main(args) == 0

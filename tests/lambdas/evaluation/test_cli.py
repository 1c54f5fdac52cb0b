import json
import re

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


LABEL_GATE = {"gate": {"min_metrics": {"f1_macro": 0.9}}}


def test_cli_scores_precomputed_outputs_and_writes_report(tmp_path, capsys):
    data = write_lines(tmp_path / "d.jsonl", DATASET)
    outputs = write_lines(tmp_path / "o.jsonl", OUTPUTS)
    settings = tmp_path / "s.json"
    settings.write_text(json.dumps(LABEL_GATE))
    code = cli.main(
        [
            "--settings",
            str(settings),
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
    # Precomputed outputs have no latency and no cost: no model is "best on speed, cost".
    assert "no data for speed, cost" in out and "best on quality, speed" not in out
    assert (first[4], first[5]) == ("-", "-")
    html = (tmp_path / "r.html").read_text()
    models = re.search(r'<section id="models">(.*?)</section>', html).group(1)
    fm1 = re.search(r"<tr><td>fm1</td>(.*?)</tr>", models).group(1)
    cells = re.findall(r"<td>(.*?)</td>", fm1)
    # p50 ms, p95 ms and cost: missing, not 0
    assert cells[5:8] == ['<span class="missing">missing</span>'] * 3 and "<svg" in html
    assert len((tmp_path / "res.jsonl").read_text().splitlines()) == 4


def test_cli_strict_rejects_bad_line_and_skip_reports_it(tmp_path, capsys):
    data = write_lines(tmp_path / "d.jsonl", DATASET, extra='{"id": "r3"}\n')
    outputs = write_lines(tmp_path / "o.jsonl", OUTPUTS)
    settings = tmp_path / "s.json"
    settings.write_text(json.dumps(LABEL_GATE))
    args = ["--settings", str(settings), "--dataset", str(data), "--outputs", str(outputs)]
    assert cli.main([*args, "--strict"]) == 2
    assert "line 3:" in capsys.readouterr().err
    assert cli.main([*args, "--skip-bad-lines", "--quiet"]) == 0
    assert "skipped line 3:" in capsys.readouterr().err


def test_cli_exits_1_when_the_gate_fails_unless_report_only(tmp_path, capsys):
    settings = tmp_path / "s.json"
    settings.write_text(json.dumps({"gate": {"min_metrics": {"f1_macro": 0.99}}}))
    data = write_lines(tmp_path / "d.jsonl", DATASET)
    outputs = write_lines(tmp_path / "o.jsonl", [o for o in OUTPUTS if o["model"] == "fm2"])
    args = ["--dataset", str(data), "--outputs", str(outputs), "--settings", str(settings), "--quiet"]
    assert cli.main(args) == 1
    assert "gate (fm2): FAIL - failed: f1_macro >= 0.99" in capsys.readouterr().out
    assert cli.main([*args, "--report-only"]) == 0


def test_default_gate_needs_a_judge_score_so_a_label_only_run_fails_it(tmp_path, capsys):
    data = write_lines(tmp_path / "d.jsonl", DATASET)
    outputs = write_lines(tmp_path / "o.jsonl", OUTPUTS)
    assert cli.main(["--dataset", str(data), "--outputs", str(outputs), "--quiet"]) == 1
    assert "judge_overall >= 6" in capsys.readouterr().out


def test_a_config_without_a_quality_threshold_is_refused_by_name(tmp_path, capsys):
    settings = tmp_path / "s.json"
    settings.write_text(json.dumps({"gate": {"min_metrics": {}}}))
    data = write_lines(tmp_path / "d.jsonl", DATASET)
    outputs = write_lines(tmp_path / "o.jsonl", OUTPUTS)
    args = ["--dataset", str(data), "--outputs", str(outputs), "--settings", str(settings)]
    assert cli.main(args) == 2
    assert "min_metrics: the gate needs at least one quality threshold" in capsys.readouterr().err
    settings.write_text(
        json.dumps({"gate": {"min_metrics": {}, "quality_floor_opt_out": "smoke test of wiring"}})
    )
    assert cli.main([*args, "--quiet"]) == 0


def test_every_record_errored_scores_nothing_exits_1_and_prints_the_first_cause(tmp_path, capsys):
    data = write_lines(tmp_path / "d.jsonl", DATASET)
    outputs = write_lines(tmp_path / "o.jsonl", [{"id": "zz", "model": "fm1", "output": "x"}])
    settings = tmp_path / "s.json"
    settings.write_text(
        json.dumps({"gate": {"min_metrics": {}, "quality_floor_opt_out": "errors only, on purpose"}})
    )
    code = cli.main(
        ["--dataset", str(data), "--outputs", str(outputs), "--settings", str(settings), "--quiet"]
    )
    captured = capsys.readouterr()
    assert code == 1
    assert (
        "2 of 2 rows errored; first: r1 x fm1: model: precomputed fm1: no output for record 'r1'"
        in captured.err
    )
    assert "1 output ids are in no dataset record and were ignored: zz" in captured.err
    assert "nothing was scored" in captured.err
    assert " 1.000 " not in captured.out  # an all-error model gets no quality credit


def test_unscored_records_are_counted(tmp_path, capsys):
    data = write_lines(tmp_path / "d.jsonl", [*DATASET, {"id": "r3", "input": "Write a haiku"}])
    outputs = write_lines(tmp_path / "o.jsonl", [*OUTPUTS, {"id": "r3", "model": "fm1", "output": "..."}])
    settings = tmp_path / "s.json"
    settings.write_text(json.dumps(LABEL_GATE | {"gate": {"min_metrics": {"f1_macro": 0.1}}}))
    cli.main(["--dataset", str(data), "--outputs", str(outputs), "--settings", str(settings), "--quiet"])
    assert "1 rows unscored (no reference, no labels and no judge), e.g. r3" in capsys.readouterr().err


def test_live_without_settings_says_what_is_missing(tmp_path, capsys):
    data = write_lines(tmp_path / "d.jsonl", DATASET)
    assert cli.main(["--dataset", str(data), "--live"]) == 2
    assert capsys.readouterr().err.startswith("--live: needs --settings")


def test_prompt_ref_records_need_prompts_and_render_with_jinja2(tmp_path, capsys):
    data = write_lines(
        tmp_path / "d.jsonl",
        [{"id": "p1", "prompt_ref": "greet@1", "variables": {"who": "Ann"}, "labels": ["hi"]}],
    )
    outputs = write_lines(tmp_path / "o.jsonl", [{"id": "p1", "model": "fm1", "output": "hi"}])
    args = ["--dataset", str(data), "--outputs", str(outputs), "--quiet", "--report-only"]
    assert cli.main(args) == 2
    assert "--prompts or --catalog-url: required" in capsys.readouterr().err
    prompts = tmp_path / "p.json"
    prompts.write_text(
        json.dumps(
            {
                "greet@1": {
                    "name": "greet",
                    "version": 1,
                    "content": {"template": "Hi {{ who }}", "variables": [{"name": "who"}]},
                }
            }
        )
    )
    assert cli.main([*args, "--prompts", str(prompts), "--report", str(tmp_path / "r.html")]) == 0
    assert "prompt greet@1" in (tmp_path / "r.html").read_text()


def test_catalog_url_fetches_the_prompts_and_needs_a_region(tmp_path, capsys, monkeypatch):
    from common import prompt_client

    fetched = []

    class Client:
        def __init__(self, url, *, region):
            fetched.append((url, region))

        def get_version(self, name, version):
            return prompt_client.FetchedPrompt(
                name, f"@{version}", version, "Hi {{ who }}", [{"name": "who"}], {}
            )

    monkeypatch.setattr(prompt_client, "PromptClient", Client)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    data = write_lines(
        tmp_path / "d.jsonl",
        [{"id": "p1", "prompt_ref": "greet@1", "variables": {"who": "Ann"}, "labels": ["hi"]}],
    )
    outputs = write_lines(tmp_path / "o.jsonl", [{"id": "p1", "model": "fm1", "output": "hi"}])
    url = "https://abc.execute-api.eu-west-1.amazonaws.com/prompt-catalog"
    args = [
        "--dataset",
        str(data),
        "--outputs",
        str(outputs),
        "--quiet",
        "--report-only",
        "--catalog-url",
        url,
    ]
    assert cli.main(args) == 2
    assert capsys.readouterr().err.startswith("--region: required")
    assert cli.main([*args, "--region", "eu-west-1"]) == 0
    assert fetched == [(url, "eu-west-1")]

"""`diff`: ratio per cell, Mann-Whitney U on the trials, CI overlap, 10% threshold; regressions and
improvements flagged, cells of only one run listed."""
import csv
import io
import json

import pytest

import synthetic_runs as S
from compare.render import analysis
from compare.render import diff as D
from compare import results as R
from compare.options import BadInput

FIVE = [0.98, 0.99, 1.0, 1.01, 1.02]


def trials(base, spread=FIVE):
    return [base * f for f in spread]


def pair():
    """A and B with one cell of each kind of outcome."""
    a = S.run([
        S.result(S.cell("torch", "mlp", "threads", 1), trials(1000)),          # B: +30% -> faster
        S.result(S.cell("torch", "mlp", "threads", 2), trials(1000)),          # B: -30% -> slower
        S.result(S.cell("torch", "mlp", "threads", 4), trials(1000)),          # B: +3% -> same
        S.result(S.cell("mlx", "mlp", "threads", 1), trials(1000)),            # B: crash -> broke
        S.result(S.cell("mlx", "mlp", "threads", 2), None, "timeout", "no result within 120 s"),  # B ok: fixed
        S.result(S.cell("mlx", "mlp", "threads", 4), trials(1000, [0.5, 1.5, 1.0, 0.7, 1.3])),  # noisy +15%
        S.result(S.cell("torch", "block", "threads", 1), trials(10)),          # only in A
    ], host_name="box", created="2026-01-01T00:00:00+00:00")
    b = S.run([
        S.result(S.cell("torch", "mlp", "threads", 1), trials(1300)),
        S.result(S.cell("torch", "mlp", "threads", 2), trials(700)),
        S.result(S.cell("torch", "mlp", "threads", 4), trials(1030)),
        S.result(S.cell("mlx", "mlp", "threads", 1), None, "crash", "killed by SIGSEGV"),
        S.result(S.cell("mlx", "mlp", "threads", 2), trials(900)),
        S.result(S.cell("mlx", "mlp", "threads", 4), trials(1150, [0.5, 1.5, 1.0, 0.7, 1.3])),
        S.result(S.cell("torch", "mlp", "sequential"), trials(900)),            # only in B
    ], host_name="box", created="2026-01-02T00:00:00+00:00")
    return a, b


def by_label(d):
    return {(c.backend, c.workload, c.mode, c.threads): c for c in d.cells}


def test_verdicts_flags_and_statistics():
    d = D.compare_runs(*pair())
    c = by_label(d)
    faster = c[("torch", "mlp", "threads", 1)]
    assert (faster.verdict, faster.flag) == ("faster", "improvement")
    assert faster.ratio == pytest.approx(1.3) and faster.ci_overlap is False
    assert faster.p_value == pytest.approx(2 / 252) and faster.min_p == pytest.approx(2 / 252)
    slower = c[("torch", "mlp", "threads", 2)]
    assert (slower.verdict, slower.flag) == ("slower", "regression") and slower.ratio == pytest.approx(0.7)
    same = c[("torch", "mlp", "threads", 4)]
    assert (same.verdict, same.flag) == ("same", None) and same.ratio == pytest.approx(1.03)
    broke = c[("mlx", "mlp", "threads", 1)]
    assert (broke.verdict, broke.flag, broke.b_status, broke.ratio) == ("broke", "regression", "crash", None)
    fixed = c[("mlx", "mlp", "threads", 2)]
    assert (fixed.verdict, fixed.flag, fixed.a_status) == ("fixed", "improvement", "timeout")
    noisy = c[("mlx", "mlp", "threads", 4)]   # +15% but the trials overlap: not a finding
    assert (noisy.verdict, noisy.flag) == ("unclear", None) and noisy.p_value > 0.05 and noisy.ci_overlap is True
    assert [x["workload"] for x in d.only_a] == ["block"] and [x["mode"] for x in d.only_b] == ["sequential"]
    assert {x.label() for x in d.regressions} == {"torch cpu float32: mlp threads ×2",
                                                 "mlx cpu float32: mlp threads ×1"}
    assert len(d.improvements) == 2
    assert "1 faster, 1 slower, 1 same (within ±10%), 1 unclear" in d.summary_line()
    assert "1 only in A, 1 only in B; 2 regression(s), 2 improvement(s)" in d.summary_line()


def test_threshold_and_alpha_are_respected():
    c = by_label(D.compare_runs(*pair(), threshold=0.5))
    assert c[("torch", "mlp", "threads", 1)].verdict == "same"      # 30% < 50%
    c = by_label(D.compare_runs(*pair(), alpha=0.001))
    assert c[("torch", "mlp", "threads", 1)].verdict == "unclear"   # p = 0.008 is not < 0.001


def test_too_few_trials_is_unclear_with_an_explanation():
    a = S.run([S.result(S.cell(), [100, 101, 102])], trials=3)
    b = S.run([S.result(S.cell(), [200, 201, 202])], trials=3)
    d = D.compare_runs(a, b)
    (c,) = d.cells
    assert c.verdict == "unclear" and c.ci_overlap is False and c.p_value == pytest.approx(0.1)
    assert c.min_p == pytest.approx(0.1) == analysis.min_p_value(3, 3)
    assert any("smallest possible p is 0.1" in n and "--trials 5" in n for n in d.notes)


def test_notes_name_different_machines_and_settings():
    a = S.run([S.result(S.cell(), trials(100))], host_name="laptop", duration=0.5)
    b = S.run([S.result(S.cell(), trials(100))], host_name="h100", duration=0.2)
    notes = " | ".join(D.compare_runs(a, b).notes)
    assert "A (laptop) and B (h100) are different machines" in notes
    assert "different settings: duration 0.5 → 0.2" in notes


def test_identical_trials_are_the_same_not_an_error():
    a = S.run([S.result(S.cell(), [100, 100, 100, 100])])
    (c,) = D.compare_runs(a, a).cells
    assert (c.verdict, c.p_value, c.ratio) == ("same", 1.0, 1.0)


def test_renderers(tmp_path, capsys):
    a, b = pair()
    pa, pb = R.save(a, tmp_path / "a.json"), R.save(b, tmp_path / "b.json")
    d = D.diff(pa, pb, "json")
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "threadbench.diff/1" and doc["regressions"] == len(d.regressions) == 2
    assert doc["counts"]["faster"] == 1 and doc["only_in_b"][0]["label"] == "torch cpu float32: mlp sequential"
    assert doc["a"]["file"] == str(pa)

    D.diff(pa, pb, "csv")
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == len(d.cells) + 2
    assert {r["verdict"] for r in rows} >= {"faster", "slower", "broke", "fixed", "only in A", "only in B"}

    D.diff(pa, pb, "markdown")
    md = capsys.readouterr().out
    assert "| torch cpu float32: mlp threads ×2 | 1,000 [980–1,020] | 700 [686–714] | 0.700 | -30.0% |" in md
    assert "SLOWER" in md and "- only in A: torch cpu float32: block threads ×1" in md

    D.diff(pa, pb, "table")
    out = capsys.readouterr().out
    assert "BROKE" in out and "only in B: torch cpu float32: mlp sequential" in out


@pytest.mark.parametrize("kw, msg", [({"threshold": 0}, "--threshold"), ({"alpha": 1.5}, "--alpha"),
                                     ({"fmt": "yaml"}, "--format")])
def test_bad_options(tmp_path, kw, msg):
    p = R.save(S.run([]), tmp_path / "a.json")
    with pytest.raises(BadInput, match=msg):
        D.diff(p, p, **kw)


def test_fail_on_regression_sets_exit_code_1(tmp_path, threadbench):
    a, b = pair()
    pa, pb = R.save(a, tmp_path / "a.json"), R.save(b, tmp_path / "b.json")
    flagged = threadbench("diff", pa, pb, "--fail-on-regression", "-f", "markdown")
    assert flagged.returncode == 1 and "SLOWER" in flagged.stdout
    plain = threadbench("diff", pa, pb, "-f", "markdown")
    assert plain.returncode == 0 and plain.stdout == flagged.stdout

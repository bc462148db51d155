"""The server scenario in `plot`, `publish` and the findings, from synthetic rate steps (no sweep): what is
drawn (a line per backend x strategy, hollow invalid steps, the starred peak, the dashed bound) and what
the findings claim (best strategy by peak valid rate with its bracket; a comparison only when brackets are
disjoint and MIN_GAIN apart; "no valid rate" with its reason)."""
from dataclasses import replace

import pytest

import synthetic_runs as S
from compare import results as R
from compare.cells import Cell, CellResult, Trial
from compare.render import analysis
from compare.render import findings as FI
from compare.render import format as fmt
from compare.render import plot as PL
from compare.render import publish as PUB
from compare.render import report as P
from compare.render import server as SR

P99_FAIL = "invalid: p99 3 ms > bound 2 ms"


def steps(*pairs) -> list[Trial]:
    """(rate, verdict) or (rate, verdict, step kind) per step, in the order the search ran them; without a
    kind, a step of a search before confirmation (an older file's)."""
    return [Trial(ops=500, seconds=1.0, lat_p50_ms=0.5, lat_p90_ms=0.8, lat_p99_ms=1.0 if p[1] == "valid" else 3.0,
                  rate=p[0], lag_p99_ms=0.01, bound_ms=2.0, verdict=p[1], step_kind=p[2] if len(p) > 2 else None)
            for p in pairs]


def confirmed(*pairs) -> list[Trial]:
    """A confirmed search: each failure run again at once, then the bracket's ends (the first and last
    argument of `ends`) by long steps. `pairs`: (rate, verdict) of its search steps."""
    *pairs, (peak, above) = pairs
    out = []
    for rate, v in pairs:
        out += [(rate, v, "search")] + ([] if v == "valid" else [(rate, v, "again")])
    return steps(*out, (peak, "valid", "long"), (above, P99_FAIL, "long"))


def server(backend: str, strategy: str, trials: list[Trial], status: str = "ok", cause: str = "",
           errors: int = 0) -> CellResult:
    c = Cell(backend=backend, device="cpu", dtype="float32", workload="mlp", mode=f"server-{strategy}", threads=2)
    return CellResult(cell=c, status=status, cause=cause, trials=trials, checked=10, errors=errors,
                      env=S.env(backend))


def server_run() -> dict:
    """torch: processes [1000, 1040) clearly above threads [400, 420); batched [950, 1100) overlaps it.
    mlx: threads never valid; processes crashed."""
    return S.run([
        server("torch", "threads", confirmed((800, P99_FAIL), (400, "valid"), (566, P99_FAIL), (476, P99_FAIL),
                                             (420, P99_FAIL), (400, 420))),
        server("torch", "batched", confirmed((1100, P99_FAIL), (950, "valid"), (950, 1100))),
        server("torch", "processes", confirmed((500, "valid"), (1000, "valid"), (2000, P99_FAIL), (1040, P99_FAIL),
                                               (1000, 1040))),
        server("mlx", "threads", steps((100, P99_FAIL, "search"), (100, P99_FAIL, "again"), (50, P99_FAIL, "search"),
                                       (50, P99_FAIL, "again"))),
        server("mlx", "processes", [], "crash", "process 2 of 2 killed by SIGSEGV"),
        server("numpy", "threads", [], "unsupported", "numpy supports float64, not float32"),
        S.result(S.cell("torch", "mlp", "sequential"), [1000.0] * 5),
    ])


def sentence(run: dict) -> str:
    (f,) = FI.findings(P.summarize([run]), P.merge([run]))
    (s,) = [x for x in f.sentences if x.startswith("Server scenario")]
    return s


def test_findings_name_each_backends_best_strategy_with_its_bracket_and_bound():
    s = sentence(server_run())
    assert "torch cpu: best processes ×2, 1k req/s [1k, 1.04k) under its 2 ms bound" in s
    assert "more than threads ×2 (400 [400, 420), 2.5×)" in s          # disjoint brackets, 2.5x apart
    assert "not clearly more than batched ×2 (950 [950, 1.1k))" in s    # its bracket reaches past 1k
    assert "mlx cpu: no valid rate (threads ×2 at 50/s, the lowest rate tried, p99 3 ms > bound 2 ms while its " \
           "p50 was 0.5 ms: the typical request met the bound, its slowest 1% (stalls, not the load) did not; " \
           "processes ×2 CRASH: process 2 of 2 killed by SIGSEGV)" in s
    assert "numpy" not in s  # unsupported cells: the throughput findings and tables say why


def test_no_valid_rate_blames_the_tail_only_where_the_median_request_had_room():
    """A p50 within half the bound at the lowest rate: the bound fails on the slowest 1% (what the H100's
    stalls did to every rate); a p50 near the bound is load or a slow model, and gets no such clause."""
    slow = [replace(t, lat_p50_ms=1.5) for t in steps((50, P99_FAIL))]
    run = S.run([server("mlx", "threads", steps((50, P99_FAIL))), server("torch", "threads", slow)])
    s = sentence(run)
    assert "mlx cpu: no valid rate (threads ×2 at 50/s, the lowest rate tried, p99 3 ms > bound 2 ms while its p50 " \
           "was 0.5 ms: the typical request met the bound" in s
    assert "torch cpu: no valid rate (threads ×2 at 50/s, the lowest rate tried, p99 3 ms > bound 2 ms)" in s


def test_a_bracket_without_long_steps_at_both_ends_is_not_printed_and_the_cell_says_what_is_known():
    """Issue 20: a failure that ran once (a search before confirmation, or one cut short) may be a stall's,
    so the peak is only a lower end: no bracket, no comparison against it, and the reason in its place."""
    once = server("torch", "threads", steps((800, P99_FAIL), (400, "valid"), (566, P99_FAIL), (476, P99_FAIL),
                                            (420, P99_FAIL)))
    run = S.run([once, server("torch", "processes", confirmed((500, "valid"), (1000, "valid"), (2000, P99_FAIL),
                                                              (1040, P99_FAIL), (1000, 1040)))])
    recs = {r["mode"]: r for r in analysis.peaks(run["rows"])}
    assert recs["server-threads"]["peak"] == 400 and recs["server-threads"]["above"] is None
    assert recs["server-threads"]["open"] == (analysis.FAILED_ONCE, 420)
    assert recs["server-processes"]["above"] == 1040 and recs["server-processes"]["open"] is None
    assert ("best processes ×2, 1k req/s [1k, 1.04k) under its 2 ms bound, not compared with threads ×2 "
            "(≥ 400, not bracketed: 420/s failed once, never run again)") in sentence(run)
    (table, curve) = SR.build(run["rows"])
    assert next(r for r in table.rows if r[2] == "threads")[6] == "≥ 400, not bracketed: 420/s failed once, never run again"
    marks = [(r[4], r[-1].rpartition(" ")[2]) for r in curve.rows if r[2] == "processes"]  # a confirmation says so
    assert sorted(m for m in marks if m[1] in ("(again)", "(long)")) == [
        ("1,000", "(long)"), ("1,040", "(again)"), ("1,040", "(long)"), ("2,000", "(again)")]


@pytest.mark.parametrize("pairs, why", [
    ([(100, "valid", "search"), (200, P99_FAIL, "search")], "200/s failed once, never run again"),
    ([(100, "valid", "search"), (200, P99_FAIL, "search"), (200, "valid", "again")], "200/s passed and failed, unsettled"),
    ([(100, "valid", "search"), (105, P99_FAIL, "search"), (105, P99_FAIL, "again")], "105/s failed twice, no long step"),
    ([(100, "valid", "search"), (105, P99_FAIL, "long")], "no long step at the peak"),
    ([(100, "valid", "search"), (200, "valid", "search")], "no rate above it failed"),
])
def test_an_open_end_says_which_end_was_not_confirmed(pairs, why):
    (rec,) = analysis.peaks(S.run([server("torch", "threads", steps(*pairs))])["rows"])
    assert rec["above"] is None and fmt.open_end(rec) == why


def test_a_comparison_needs_disjoint_brackets_and_the_min_gain():
    rec = lambda peak, above: {"peak": peak, "above": above}  # noqa: E731
    assert analysis.sustains_more(rec(1000, 1040), rec(400, 420))
    assert not analysis.sustains_more(rec(1000, 1040), rec(380, 1010))   # overlapping brackets
    assert not analysis.sustains_more(rec(1000, 1040), rec(950, 990))    # disjoint but under MIN_GAIN apart
    assert analysis.sustains_more(rec(1000, 1040), rec(900, 950)) == (1000 >= (1 + analysis.MIN_GAIN) * 900)
    assert not analysis.sustains_more(rec(1000, 1040), rec(400, None))   # unbracketed: its peak may be anywhere above


def test_a_wrong_server_cell_shows_no_rate_in_the_findings():
    run = S.run([server("torch", "threads", steps((400, "valid"), (800, P99_FAIL)), errors=3)])
    s = sentence(run)
    assert "no valid rate" in s and "wrong outputs (3 of 10 checked)" in s and "400" not in s


pytest.importorskip("matplotlib")


def test_the_server_plot_draws_steps_peaks_and_the_bound():
    fig = PL.server_figure(P.merge([server_run()]), "t")
    (ax,) = [ax for ax in fig.axes if ax.get_visible()]
    assert ax.get_title() == "mlp · float32" and ax.get_yscale() == "log"
    lines = ax.get_lines()
    bound = [l for l in lines if list(l.get_ydata()) == [2.0, 2.0]]
    curves = [l for l in lines if len(l.get_xdata()) > 1 and l not in bound]
    assert len(curves) == 4  # torch threads, batched, processes; mlx threads (its processes crashed: not drawn)
    styles = {tuple(sorted(set(l.get_xdata()))): l.get_linestyle() for l in curves}
    assert styles[(400, 420, 476, 566, 800)] != styles[(500, 1000, 1040, 2000)]  # a line style per strategy
    hollow = [l for l in lines if len(l.get_xdata()) == 1 and l.get_markerfacecolor() == "white"]
    assert len(hollow) == 9 + 3 + 5 + 4  # every invalid step: search, again and long
    rings = [l for l in lines if l.get_marker() == PL.LONG_MARK and l.get_markerfacecolor() == "none"]
    assert sorted(l.get_xdata()[0] for l in rings) == [400, 420, 950, 1000, 1040, 1100]  # each long step
    assert "long step (settles its rate)" in [t.get_text() for t in fig.legends[0].get_texts()]
    stars = [l for l in lines if l.get_marker() == PL.PEAK_MARK]
    assert sorted(l.get_xdata()[0] for l in stars) == [400, 950, 1000]
    assert len(bound) == 1 and bound[0].get_linestyle() == "--"
    assert any("mlx cpu processes: CRASH" in t.get_text() for t in ax.texts)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "torch cpu" in legend and "numpy cpu" not in legend  # unsupported: nothing drawn, no colour



def test_a_panel_within_one_decade_of_rates_still_labels_its_rate_axis():
    """The H200 transformer panel spanned ~700-5,000 queries/s: no power of ten fell inside it, so its rate
    axis had no label at all. A span that short labels 2 and 5 of each decade too; a wide one does not."""
    def labels(lo: float, hi: float) -> list[str]:
        fig = PL.server_figure(P.merge([S.run([server("torch", "threads", steps((lo, "valid"), (hi, P99_FAIL)))])]), "t")
        (ax,) = [ax for ax in fig.axes if ax.get_visible()]
        fig.canvas.draw()
        return [t.get_text() for t in ax.get_xticklabels(which="both") if t.get_text() and t.get_visible()
                and ax.get_xlim()[0] <= t.get_position()[0] <= ax.get_xlim()[1]]
    assert {"2k", "5k"} <= set(labels(1200, 4800))
    assert not {"2k", "5k"} & set(labels(40, 40_000)) and "1k" in labels(40, 40_000)


def test_a_panel_with_several_thread_counts_labels_each_curve_with_its_count():
    """Two thread counts of one strategy in a panel: each curve ends in its "×N" (this path once raised)."""
    wide = server("torch", "threads", steps((400, "valid"), (800, P99_FAIL)))
    wide = CellResult(**{**wide.__dict__, "cell": replace(wide.cell, threads=4)})
    fig = PL.server_figure(P.merge([S.run([server("torch", "threads", steps((200, "valid"), (400, P99_FAIL))),
                                           wide])]), "t")
    (ax,) = [ax for ax in fig.axes if ax.get_visible()]
    assert sorted((t.get_text(), t.xy) for t in ax.texts if t.get_text().startswith("×")) == [
        ("×2", (400, 3.0)), ("×4", (800, 3.0))]

def repeated(backend: str, strategy: str, peaks_of_processes: list[float]) -> list[CellResult]:
    """One CellResult per process (--repeats): each searched on its own, valid at its peak, invalid 5% above."""
    out = []
    for i, p in enumerate(peaks_of_processes):
        r = server(backend, strategy, steps((p / 2, "valid"), (p, "valid"), (p * 1.05, P99_FAIL)))
        out.append(CellResult(**{**r.__dict__, "cell": replace(r.cell, repeat=i)}))
    return out


def test_several_processes_give_the_median_peak_and_its_interval_never_the_best_process():
    run = S.run(repeated("torch", "processes", [600.0, 400.0, 500.0, 560.0, 480.0])
                + repeated("torch", "threads", [300.0, 310.0, 320.0, 290.0, 305.0])
                + repeated("torch", "batched", [450.0, 520.0, 610.0, 500.0, 470.0]))
    recs = {r["mode"]: r for r in analysis.peaks(run["rows"])}
    proc = recs["server-processes"]
    assert proc["peak"] == 500.0 and (proc["low"], proc["high"]) == (400.0, 600.0)   # not 600, the best of five
    assert proc["n_processes"] == 5 and abs(proc["level"] - 0.9375) < 1e-9 and proc["above"] is None
    assert len(proc["steps"]) == 15
    s = sentence(run)
    assert "the median of 5 processes' peaks [its interval]" in s
    assert "torch cpu: best processes ×2, 500 req/s [400–600] under its 2 ms bound" in s
    assert "more than threads ×2 (305 [290–320], 1.6×)" in s           # intervals disjoint, 10% apart
    assert "not clearly more than batched ×2 (500 [450–610])" in s     # overlapping intervals: no claim
    (table, _) = SR.build(run["rows"])
    row = next(r for r in table.rows if r[2] == "processes")
    assert row[5] == "500" and row[6] == "400–600 (5 processes, 93.8%)", row


def test_with_several_processes_the_curve_is_the_median_processs_search_and_the_rest_are_faint():
    run = S.run(repeated("torch", "processes", [600.0, 400.0, 500.0]))
    fig = PL.server_figure(P.merge([run]), "t")
    (ax,) = [ax for ax in fig.axes if ax.get_visible()]
    curves = [l for l in ax.get_lines() if len(l.get_xdata()) > 1 and len(set(l.get_ydata())) > 1]
    assert [list(l.get_xdata()) for l in curves] == [[250.0, 500.0, 525.0]]   # one search, not 9 zig-zag steps
    faint = [l for l in ax.get_lines() if len(l.get_xdata()) == 1 and (l.get_alpha() or 1) < 1]
    assert sorted(l.get_xdata()[0] for l in faint) == [200.0, 300.0, 400.0, 420.0, 600.0, 630.0]
    (star,) = [l for l in ax.get_lines() if l.get_marker() == PL.PEAK_MARK]
    assert star.get_xdata()[0] == 500.0
    assert "other processes' steps" in [t.get_text() for t in fig.legends[0].get_texts()]


def test_a_process_without_a_valid_rate_counts_as_zero_and_one_failed_process_fails_the_cell():
    none_valid = server("mlx", "threads", steps((50, P99_FAIL), (25, P99_FAIL)))
    runs = repeated("mlx", "threads", [300.0, 320.0]) + [
        CellResult(**{**none_valid.__dict__, "cell": replace(none_valid.cell, repeat=2)})]
    (rec,) = analysis.peaks(S.run(runs)["rows"])
    assert rec["peak"] == 300.0 and rec["low"] == 0.0
    crashed = server("mlx", "threads", [], "crash", "process 2 of 2 killed by SIGSEGV")
    runs = repeated("mlx", "threads", [300.0, 320.0]) + [
        CellResult(**{**crashed.__dict__, "cell": replace(crashed.cell, repeat=2)})]
    (rec,) = analysis.peaks(S.run(runs)["rows"])
    assert rec["status"] == "crash" and "SIGSEGV" in rec["cause"]


@pytest.mark.parametrize("bounds", [
    (10.4, 10.1, 11.9),                  # near-equal (the H100 transformer's, 2026-11)
    (6.9, 2.02, 2.11, 3.49, 5.62, 2.0),  # a stack of three, then bounds a label's lift reached (the H100 mlp's)
])
def test_near_equal_bounds_get_labels_that_do_not_overlap(bounds):
    """Each strategy's own bound (10x its single-request p50) gets a label at the line's end: all stay readable."""
    def at(bound, pairs):
        return [Trial(**{**t.__dict__, "bound_ms": bound}) for t in steps(*pairs)]
    cells = [(b, s) for b in ("torch", "mlx", "jax") for s in ("threads", "batched")]
    run = S.run([server(b, s, at(bound, [(400 + 100 * i, "valid")])
                        + [replace(at(bound, [(9000, P99_FAIL)])[0], lat_p99_ms=3000.0)])   # a panel ~4 decades tall
                 for i, ((b, s), bound) in enumerate(zip(cells, bounds))])
    fig = PL.server_figure(P.merge([run]), "t")
    (ax,) = [ax for ax in fig.axes if ax.get_visible()]
    fig.canvas.draw()
    boxes = {t.get_text(): t.get_window_extent() for t in ax.texts if t.get_text().startswith("bound")}
    assert set(boxes) == {f"bound {fmt.short(b)} ms" for b in bounds}
    names = sorted(boxes)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not boxes[a].overlaps(boxes[b]), (a, b)


def test_a_bound_several_backends_share_is_grey_and_one_backends_is_in_its_colour():
    """The H200 mlp panel: MLX's and JAX's cells had the same 2 ms bound, torch its own 3.37 ms. The shared line
    took the colour of whichever backend a set yielded first, which Python's per-process string hashing
    decides: the committed PNG then differed from a fresh publish now and then. A shared bound is grey."""
    def at(bound, backend):
        trials = [Trial(**{**t.__dict__, "bound_ms": bound}) for t in steps((400, "valid"), (800, P99_FAIL))]
        return server(backend, "threads", trials)
    fig = PL.server_figure(P.merge([S.run([at(3.37, "torch"), at(2.0, "mlx"), at(2.0, "jax")])]), "t")
    (ax,) = [ax for ax in fig.axes if ax.get_visible()]
    lines = {l.get_ydata()[0]: l.get_color() for l in ax.get_lines()
             if l.get_linestyle() == "--" and len(set(l.get_ydata())) == 1 and len(l.get_ydata()) == 2}
    assert set(lines) == {2.0, 3.37}
    assert lines[2.0] == "0.35" and lines[3.37] != "0.35"


def test_no_server_cells_no_server_plot_and_publish_adds_it_only_with_them(tmp_path):
    assert PL.server_figure(P.merge([S.scaling_run()]), "t") is None
    runs, out = tmp_path / "runs", tmp_path / "out"
    runs.mkdir()
    plain, served = S.scaling_run("m1"), server_run()
    served["machine"] = "m2"
    served["host"]["host"] = "m2"
    R.save(plain, runs / "a.json")
    R.save(served, runs / "b.json")
    names = sorted(p.name for p in PUB.publish(runs, out))
    server_pngs = [n for n in names if n.endswith("-server.png")]
    assert len(server_pngs) == 1 and len([n for n in names if n.endswith(".png")]) == 3, names
    assert f"]({server_pngs[0]})" in (out / "README.md").read_text()
    text = (out / "README.md").read_text()
    details = "".join(p.read_text() for p in sorted((out / "details").glob("*.md")))
    assert "Server scenario" in text and "server — peak rate under the p99 bound" in details
    assert "server peak: " in text   # the brief says it too


def test_plot_writes_the_server_figure_beside_the_scaling_one(tmp_path):
    path = R.save(server_run(), tmp_path / "r.json")
    written = PL.plot_all([path], tmp_path / "s.png")
    assert [p.name for p in written] == ["s.png", "s-server.png"]


def test_the_sentence_and_the_table_say_who_issued_the_queries():
    own = server_run()
    assert "; queries from threadbench's own dispatcher)" in sentence(own)
    (peaks, _) = SR.build(P.merge([own]))
    assert any("threadbench's own dispatcher issued the queries" in n for n in peaks.notes)
    assert not any("MLPerf LoadGen's Server scenario issued" in n for n in peaks.notes)
    lg = S.run([replace(r, cell=replace(r.cell, load_generator="loadgen"))
                for r in [server("torch", "threads", confirmed((400, "valid"), (420, P99_FAIL), (400, 420)))]])
    assert "; queries from MLPerf LoadGen)" in sentence(lg)
    (peaks, _) = SR.build(P.merge([lg]))
    assert not any("threadbench's own dispatcher issued" in n for n in peaks.notes)


def test_the_brief_names_a_backend_whose_server_cells_found_no_valid_rate():
    """The H100 transformer's brief named MLX's 140/s as its server peak and said nothing of torch, whose two
    cells found no valid rate: the reader would have taken MLX for the only or best server there."""
    run = server_run()
    (line,) = FI.brief(P.summarize([run]), rows=P.merge([run]))
    assert line.endswith("server peak: torch processes ×2 1k [1k, 1.04k), mlx no valid rate under its bound.")
    run = S.run([server("mlx", "processes", [], "crash", "killed"), S.result(S.cell("mlx", "mlp", "sequential"),
                                                                           [1000.0] * 5)])
    (line,) = FI.brief(P.summarize([run]), rows=P.merge([run]))
    assert "server peak" not in line   # a crashed server cell found nothing: the findings say why, not the brief

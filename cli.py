"""threadbench command line: a thin typer app over compare/ (framework-free) and backends/ (lazy).

At module level only plain tables and small modules (exit codes, modes, output formats, the input errors):
each command imports its implementation when it runs, so `python cli.py --help` loads no framework, numpy,
polars, scipy or matplotlib. Not here: any measuring or rendering logic."""
from __future__ import annotations

import functools
import os
import signal
import sys
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer

from compare import exits, options
from compare.cells import AUTO, LOAD_GENERATORS, MODES, Cell
from compare.options import BadInput
from compare.render import outputs
from compare.results import ResultsError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="How much inference throughput do you really get from several Python threads, "
                       "on PyTorch vs MLX (and plug-ins), on this machine?")
STATE = {"debug": False}
DEFAULT_REPEATS = 7  # processes per cell: with 5, intervals covered a re-run's median in 88% of cases on the idle
#                      2-core CPU (benchmarks/README.md, "The README's compare"), under the 90% goal


def fail(message: str) -> None:
    typer.echo(f"threadbench: error: {message}", err=True)
    raise typer.Exit(exits.BAD_INPUT)


def guarded(fn):
    """Bad input -> one line on stderr and exit code 2; with --debug the whole traceback first, same code."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from backends import RegistryError   # the backends package imports numpy: only when a command runs
        try:
            return fn(*args, **kwargs)
        except (BadInput, ResultsError, RegistryError) as e:
            if STATE["debug"]:
                print_chain(e)
            fail(str(e))
    return wrapper


def print_chain(e: BaseException) -> None:
    """The full traceback of `e` and of every exception behind it, even one re-raised `from None`: a
    plug-in that fails to import shows its own file and line, not only where the core noticed."""
    seen, link = set(), e
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        link.__suppress_context__ = False
        link = link.__cause__ or link.__context__
    traceback.print_exception(e, file=sys.stderr)


@app.callback()
def main_options(debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors.")):
    STATE["debug"] = debug
    if debug:  # the cells' processes inherit it; compare prints a failed cell's traceback
        os.environ["THREADBENCH_DEBUG"] = "1"


@app.command("backends")
@guarded
def cmd_backends():
    """List every backend (built-in and plug-in), its devices and options, why any device is unavailable,
    and every plug-in that was refused, with the reason."""
    import backends
    for name in backends.names():
        try:
            b = backends.load(name)
            status = b.device_status()
        except Exception as e:  # noqa: BLE001 - a broken plug-in is reported, not fatal
            typer.echo(f"{name}: cannot load: {e}")
            if STATE["debug"]:
                print_chain(e)
            continue
        default = b.default_device()
        origin = backends.origin(name)
        typer.echo(f"{name}  dtypes: {', '.join(b.dtypes)}  default device: {default or 'none'}"
                   + ("" if origin == "built-in" else f"  ({origin})"))
        for dev in b.devices:
            why = status.get(dev)
            typer.echo(f"  {dev:5} {'available' if why is None else 'unavailable: ' + why}")
        for opt, spec in b.options.items():
            values = "|".join(spec.choices) or "N"
            typer.echo(f"  option {name}.{opt}={values}" + (f" (default {spec.default})" if spec.default else "")
                       + f": {spec.help}")
    for reg in backends.refused():
        typer.echo(f"refused: {reg.refused}")


@app.command("new-backend")
@guarded
def cmd_new_backend(
    name: str = typer.Argument(..., help="The backend's name (lower-case letters, digits, '-', '_').",
                               show_default=False),
    folder: Optional[Path] = typer.Argument(None, help="Where the package goes (default ./threadbench-NAME).",
                                            show_default=False),
):
    """Write a ready plug-in package: pyproject with the entry point, a working NumPy float32 backend with
    every method explained, and a parity test. Install it with `pip install -e FOLDER`."""
    from backends.scaffold import write_package
    written = write_package(name, folder)
    typer.echo(f"wrote {written}; next: pip install -e {written} && python cli.py backends "
               f"&& python -m pytest {written}", err=True)


@app.command("compare")
@guarded
def cmd_compare(
    ctx: typer.Context,
    backends_: str = typer.Option("torch,mlx", "--backends", "-b", help="Comma-separated backends (see `backends`)."),
    workloads_: str = typer.Option("mlp,block,transformer", "--workloads", "-w", help="mlp, block, transformer."),
    threads: Optional[str] = typer.Option(None, "--threads", "-t", show_default=False,
                                          help="Thread counts, e.g. 1,2,4,8. Default: 1,2,4,8 up to twice this "
                                               "machine's cores (1,2,4 on 2 cores)."),
    modes: str = typer.Option("sequential,threads", "--modes", "-m",
                              help=f"{', '.join(MODES)} (or 'all')."),
    device: str = typer.Option("auto", "--device", "-d",
                               help="auto (each backend's default), gpu, cpu, or a backend's own name (cuda, mps)."),
    devices: Optional[str] = typer.Option(None, "--devices", show_default=False,
                                          help="replicas mode: device indices, one model replica per device, e.g. "
                                               "0,1,2,3 (GPUs of the backend's kind; on cpu, replicas with the "
                                               "cores split between them). Its cells run 1, 2, 4 ... and all of them."),
    dtype: str = typer.Option("float32", "--dtype", help="float32, bfloat16, float16 (comma-separated)."),
    duration: float = typer.Option(0.25, "--duration", help="Seconds per timed trial (the shortest window)."),
    trials: int = typer.Option(3, "--trials", help="Timed trials (windows) per cell process."),
    repeats: Optional[int] = typer.Option(None, "--repeats", show_default=False,
                                          help="Fresh processes per cell, one per round of the sweep; the CI spans "
                                               "what varies between them, at the level their number gives "
                                               f"(default {DEFAULT_REPEATS}: {100 * (1 - 2 * 0.5 ** DEFAULT_REPEATS):.1f}%; "
                                               "5: 93.8%; 1: one process's windows only; with --target-ci the "
                                               "default is the fewest that give 90%: 5)."),
    target_ci: Optional[str] = typer.Option(None, "--target-ci", show_default=False,
                                            help="Stop when the answer is known: after --repeats processes per cell "
                                                 "(at least 5), add rounds only for the cells whose interval is still "
                                                 "wider than this % of its median (e.g. 5%), up to --max-repeats; "
                                                 "every interval is then at the stopping rule's 90.6%."),
    max_repeats: int = typer.Option(15, "--max-repeats", help="--target-ci: the most processes a cell gets."),
    budget: Optional[float] = typer.Option(None, "--budget", show_default=False,
                                           help="Minutes the sweep (with --shard: this shard) may take: with --costs, "
                                                "the costliest cells are left out until it fits, said before it "
                                                "starts; without, the first round runs and the later rounds that fit "
                                                "follow. With --target-ci, added rounds stop at the budget."),
    costs: Optional[Path] = typer.Option(None, "--costs", show_default=False,
                                         help="--budget: an earlier results file whose per-cell times plan the sweep."),
    process_per_cell: bool = typer.Option(False, "--process-per-cell",
                                          help="Measure every cell process in a fresh worker process of its own "
                                               "(start-up paid per cell), instead of one worker per framework and "
                                               "round measuring its share of the sweep in a shuffled order."),
    python: Optional[str] = typer.Option(None, "--python",
                                         help="Other Python interpreters to run every cell under too, "
                                              "comma-separated paths (the default, this one, always runs); a "
                                              "free-threaded build runs each cell twice, GIL on and GIL off. "
                                              "benchmarks/build-freethreaded.sh builds one."),
    warmup: int = typer.Option(3, "--warmup", help="Warm-up ops per thread before timing."),
    size: Optional[str] = typer.Option(None, "--size", help="Workload size knobs, e.g. layers=2,seq=32,batch=8."),
    fp32_precision: str = typer.Option("highest", "--fp32-precision",
                                       help="float32 matmul modes to run, comma-separated: highest (true fp32), "
                                            "high (TF32); backends without the switch run float32 once as 'native'."),
    offline_k: str = typer.Option("1,8,64", "--offline-k", help="offline mode: requests per forward."),
    backend_option: list[str] = typer.Option([], "--backend-option", "-B",
                                             help="A backend's own setting, NAME.OPTION=VALUE (e.g. "
                                                  "mybackend.execution=parallel); repeat it or separate with commas. "
                                                  "`backends` lists each backend's options."),
    max_batch: int = typer.Option(0, "--max-batch", help="batched mode: most requests per forward (0 = threads)."),
    max_wait_ms: float = typer.Option(2.0, "--max-wait-ms", help="batched mode: wait to fill a batch."),
    latency_bound_ms: Optional[float] = typer.Option(None, "--latency-bound-ms",
                                                     help="server modes: p99 latency bound (default: 10x the "
                                                          "workload's single-request p50, at least 2 ms)."),
    load_generator: str = typer.Option(AUTO, "--load-generator",
                                       help="server modes: who issues the queries and judges each rate: loadgen "
                                            "(MLPerf LoadGen's Server scenario; pip install 'threadbench[loadgen]'), "
                                            "threadbench (its own dispatcher) or auto: loadgen under each "
                                            "interpreter that has it, else threadbench."),
    intra_op_threads: Optional[int] = typer.Option(None, "--intra-op-threads",
                                                   help="Math-library threads per process (torch.set_num_threads; "
                                                        "numpy via threadpoolctl); default: each framework's own."),
    cell_timeout: Optional[float] = typer.Option(None, "--cell-timeout", help="Seconds before a cell counts as hung."),
    mem_limit_mb: Optional[float] = typer.Option(None, "--mem-limit-mb",
                                                 help="Host memory (MB) a cell's processes may use (default 75% of RAM)."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Run only the cells this results file lacks or that "
                                          "failed there; keeps the rest (writes back to it unless --out is given)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Results file (default runs/<date>-<host>-<id>.json, "
                                       "git-ignored; `publish` reads only results/runs/). An existing file is refused "
                                       "unless --overwrite."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Let --out replace an existing file."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", show_default=False,
                                             help="Folder of the float64 references that outputs are checked "
                                                  "against, kept for later runs that name it (shards of one sweep "
                                                  "compute each once). Default: a temporary folder per run."),
    peak_probe: bool = typer.Option(True, "--peak-probe/--no-peak-probe",
                                    help="Measure each backend's matmul peak (and an accelerator's launch rate) "
                                         "first. Leave it out of a run that `publish` shows beside another run of "
                                         "this machine that has it (their cells must not overlap)."),
    machine: Optional[str] = typer.Option(None, "--machine", help="Name of this machine in tables, plots and "
                                          "publish (default from the hardware, e.g. 'H100 80GB')."),
    shard: Optional[str] = typer.Option(None, "--shard", help="Run part I of N of the sweep (e.g. 2/4): whole "
                                        "worker processes (a round of one framework), consecutive in run order, "
                                        "about equal in cells; its results file stands alone and report, diff, plot "
                                        "and publish merge the shards of one sweep (a missing one is named)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
    json_: bool = typer.Option(False, "--json", help="Print the results document (JSON) on stdout instead of "
                               "the tables; progress and messages go to stderr."),
):
    """Run the matrix and print side-by-side throughput and scaling tables."""
    import backends
    import workloads
    from compare.measure.plan import Settings, all_devices, default_threads, knob_names, usable_cores
    from compare.measure.runner import Limits
    from compare.measure.server import STRATEGIES
    from compare import stopping

    mode_list = options.runnable_modes(MODES, STRATEGIES) if modes.strip() == "all" else options.names("--modes", modes, MODES, "mode")
    for item in backends_.split(","):  # a refused plug-in: its reason, not "unknown backend"
        if (why := backends.refusal(item.strip())) is not None:
            raise BadInput(f"--backends: {why}")
        for reg in backends.refused():  # e.g. a plug-in named like a built-in: say which one runs
            if reg.name == item.strip():
                typer.echo(f"threadbench: warning: {reg.refused}; {reg.name} is the built-in", err=True)
    shard_of = options.shard(shard)
    if budget is not None and not budget > 0:
        raise BadInput(f"--budget: {budget:g} minutes; give a positive number of minutes, e.g. --budget 8")
    if costs is not None and budget is None:
        raise BadInput("--costs plans a sweep to fit --budget; give --budget MINUTES with it")
    if costs is not None and not costs.is_file():
        raise BadInput(f"--costs: {costs}: no such results file")
    if repeats is None:   # --target-ci starts where its rule can (and adds processes); a fixed sweep gets the default
        repeats = stopping.min_processes(stopping.LEVEL) if target_ci is not None else DEFAULT_REPEATS
    target = options.target_ci(target_ci, repeats, max_repeats, stopping.min_processes(stopping.LEVEL),
                               stopping.LEVEL)
    if target is not None and shard_of is not None:
        raise BadInput("--target-ci decides a cell's further processes from all of its processes, which no one "
                       "shard holds; give a sharded sweep a fixed --repeats")
    settings = Settings(
        backends=tuple(options.names("--backends", backends_, backends.names(), "backend")),
        workloads=tuple(options.names("--workloads", workloads_, list(workloads.WORKLOADS), "workload")),
        modes=tuple(mode_list),
        threads=tuple(options.int_list("--threads", threads) if threads is not None else default_threads()),
        dtypes=tuple(options.names("--dtype", dtype, ["float32", "bfloat16", "float16", "float64"], "dtype")),
        device=options.one_name("--device", device, sorted(all_devices()), "device"),
        offline_k=tuple(options.int_list("--offline-k", offline_k, hi=4096)),
        knobs=options.sizes(size, knob_names()),
        repeats=repeats,
        process_per_cell=process_per_cell,
        target_ci=target,
        max_repeats=max_repeats,
        peak_probe=peak_probe,
        devices=options.devices(devices, mode_list, usable_cores()),
        pythons=tuple(options.paths("--python", python) if python else ()),
    )
    if not 1 <= repeats <= MAX_REPEATS:
        raise BadInput(f"--repeats: {repeats} is out of range; use 1 to {MAX_REPEATS}")
    precisions = tuple(options.names("--fp32-precision", fp32_precision, ["highest", "high"], "precision"))
    for opt, v in (("--duration", duration), ("--trials", trials), ("--cell-timeout", cell_timeout),
                   ("--mem-limit-mb", mem_limit_mb), ("--intra-op-threads", intra_op_threads)):
        options.positive(opt, v)
    options.server_modes(mode_list, latency_bound_ms, STRATEGIES)
    generator = options.load_generator(load_generator, mode_list, LOAD_GENERATORS, AUTO)
    if warmup < 0 or max_batch < 0 or max_wait_ms < 0:
        raise BadInput("--warmup, --max-batch and --max-wait-ms must not be negative")
    template = Cell(backend="", device="", dtype="", workload="", mode="", duration=duration, trials=trials,
                    warmup=warmup, fp32_precision=precisions[0], max_batch=max_batch, max_wait_ms=max_wait_ms,
                    backend_options=backend_option_pairs(backend_option, settings.backends),
                    latency_bound_ms=latency_bound_ms, load_generator=generator,
                    intra_op_threads=intra_op_threads)
    settings = replace(settings, template=template, fp32_precisions=precisions)
    limits = Limits(cell_timeout=cell_timeout, mem_limit_mb=mem_limit_mb)
    cache = options.cache_dir(cache_dir)
    argv = ["threadbench", *sys.argv[1:]]
    if resume is not None:
        flag = lambda p: f"--{p.replace('_', '-').rstrip('-')}"  # noqa: E731 - backends_ -> --backends
        options.no_matrix_with_resume([flag(p) for p in ctx.params
                                 if p not in RESUME_OPTIONS and ctx.get_parameter_source(p).name == "COMMANDLINE"],
                                sorted(flag(p) for p in RESUME_OPTIONS if p != "resume"))
        if out is not None and out.is_file() and not overwrite and out.resolve() != resume.resolve():
            raise BadInput(f"--out: {out} exists; give another name or add --overwrite to replace it "
                             f"(without --out, --resume writes back to {resume})")
        from compare.resume import resume_sweep
        raise typer.Exit(resume_sweep(resume, out, limits, quiet, argv, json_out=json_, cache=cache))
    if machine is not None and not machine.strip():
        raise BadInput("--machine: give a name, e.g. --machine 'H100 80GB'")
    from compare.session import run_sweep
    raise typer.Exit(run_sweep(settings, out=out, quiet=quiet, argv=argv, limits=limits, json_out=json_,
                               machine=machine.strip() if machine else None, overwrite=overwrite,
                               shard=shard_of, budget_min=budget, costs=costs, cache=cache))


MAX_REPEATS = 100  # fresh processes per cell; beyond this a sweep would take days, surely a typo
RESUME_OPTIONS = {"resume", "out", "overwrite", "quiet", "cell_timeout", "mem_limit_mb", "json_", "cache_dir"}


def backend_option_pairs(texts: list[str], selected: tuple[str, ...]) -> tuple:
    """--backend-option NAME.OPTION=VALUE[,...] (repeatable) -> sorted ("NAME.OPTION", VALUE) pairs, each
    checked against the option NAME declares (backends.base.BackendOption); plan hands each backend its own."""
    import backends
    pairs: dict[str, str] = {}
    for part in (p.strip() for text in texts for p in text.split(",")):
        key, eq, value = part.partition("=")
        name, dot, opt = key.strip().partition(".")
        value = value.strip()
        if not (eq and dot and name and opt and value):
            raise BadInput(f"--backend-option: expected NAME.OPTION=VALUE, e.g. mybackend.execution=parallel; got {part!r}")
        if name not in selected:
            raise BadInput(f"--backend-option: {key}: backend {name!r} is not in --backends ({', '.join(selected)})")
        declared = backends.load(name).options
        if opt not in declared:
            known = ", ".join(f"{name}.{o}" for o in declared) or "none"
            raise BadInput(f"--backend-option: {name} has no option {opt!r}; its options: {known}")
        if (why := declared[opt].check(value)) is not None:
            raise BadInput(f"--backend-option: {key}={value!r}: {why}")
        if pairs.get(f"{name}.{opt}", value) != value:
            raise BadInput(f"--backend-option: {key} given twice with different values")
        pairs[f"{name}.{opt}"] = value
    return tuple(sorted(pairs.items()))


def run_cli(args: list[str]) -> int:
    """The app with click's own usage errors (bad option value, unknown option, missing argument) turned
    into the same single stderr line and exit code 2 as threadbench's checks; --debug shows click's full text."""
    try:
        from typer._click.exceptions import ClickException, NoArgsIsHelpError  # typer >= 0.29 vendors click
    except ImportError:  # older typer runs on click itself
        import click.exceptions
        ClickException = click.exceptions.ClickException
        NoArgsIsHelpError = getattr(click.exceptions, "NoArgsIsHelpError", ())  # () catches nothing
    STATE["debug"] = False
    try:
        rv = app(args=args, prog_name="threadbench", standalone_mode=False)
    except NoArgsIsHelpError:
        return exits.BAD_INPUT  # typer has printed the help
    except ClickException as e:
        if STATE["debug"] or "--debug" in args:
            e.show()
        else:
            ctx = getattr(e, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            typer.echo(f"threadbench: error: {' '.join(e.format_message().split())}{hint}", err=True)
        return e.exit_code
    except typer.Abort:
        typer.echo("threadbench: aborted", err=True)
        return exits.INTERRUPTED
    return rv if type(rv) is int else exits.OK  # typer.Exit(code) comes back as its code


# -- saved runs: report, diff, plot, publish (their logic in compare/render/) ---------------------------------


@app.command("report")
@guarded
def cmd_report(
    runs: list[Path] = typer.Argument(..., help="Results files (or folders of them); several merge into one table.",
                                      show_default=False),
    format_: str = typer.Option("table", "--format", "-f", help=outputs.help_text("report")),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write to this file instead of stdout."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Let --out replace an existing file."),
):
    """Re-render saved runs (or a `report --format json` export): findings, side-by-side tables, legend and
    environment; runs of different machines become column groups. COLUMNS sets the layout width."""
    from compare.render.report import report
    report(runs, format_, out, overwrite)


@app.command("diff")
@guarded
def cmd_diff(
    a: Path = typer.Argument(..., help="Baseline results file (A).", show_default=False),
    b: Path = typer.Argument(..., help="Results file to compare with it (B).", show_default=False),
    threshold: float = typer.Option(0.10, "--threshold", help="Smallest change that counts (0.10 = 10%)."),
    alpha: float = typer.Option(0.05, "--alpha", help="Significance level of the Mann-Whitney U test on the trials."),
    format_: str = typer.Option("table", "--format", "-f", help=outputs.help_text("diff")),
    fail_on_regression: bool = typer.Option(False, "--fail-on-regression",
                                            help="Exit with code 1 when any cell regressed (for CI)."),
):
    """Per-cell ratio B÷A with a significance test; flags improvements and regressions, lists unmatched cells."""
    from compare.render.diff import diff
    d = diff(a, b, format_, threshold, alpha)   # runs with no cell in common: bad input, exit 2
    raise typer.Exit(exits.CELLS_FAILED if fail_on_regression and d.regressions else exits.OK)


@app.command("plot")
@guarded
def cmd_plot(
    runs: list[Path] = typer.Argument(..., help="Results files (or folders of them).", show_default=False),
    out: Path = typer.Option(Path("scaling.png"), "--out", "-o", help="Image file; its suffix picks the format: " + outputs.help_text("plot")),
):
    """Scaling curves: ops/s vs threads per backend and mode, a panel per workload, the offline ceiling dashed.
    Needs matplotlib, the optional plot extra."""
    from compare.render.plot import plot_all
    typer.echo(f"wrote {', '.join(map(str, plot_all(runs, out)))}", err=True)


@app.command("publish")
@guarded
def cmd_publish(
    files: Optional[list[Path]] = typer.Argument(None, help="Publish exactly these results files (default: every "
                                                 "file in --runs).", show_default=False),
    runs_dir: Path = typer.Option(Path("results/runs"), "--runs", help="The curated folder of results files to publish."),
    out_dir: Path = typer.Option(Path("results"), "--out-dir", help="Where README.md and the plots go."),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Draw results/<run>.png (needs matplotlib)."),
):
    """Rewrite results/README.md (in brief, then a section per machine: plots, like-for-like tables, findings,
    caveats), results/details/<machine>.md (every cell, environment, commands) and results/<machine>.png from the
    curated results/runs/ (a plain `compare` writes elsewhere) or the files given; with neither named, the
    supplementary pages too (results/supplementary/README.md)."""
    from compare.render.publish import OUT_DIR, RUNS_DIR, publish, publish_all
    if not files and runs_dir == RUNS_DIR and out_dir == OUT_DIR:
        written = publish_all(plots)
    else:
        written = publish(runs_dir, out_dir, plots, files=files or None)
    typer.echo("wrote " + ", ".join(str(p) for p in written), err=True)


def main():
    # SIGTERM ends a sweep like Ctrl-C: the running cell is killed, finished cells stay saved. SIGINT too,
    # even where the shell started us with it ignored (a background job), where Python would leave it so.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    sys.exit(run_cli(sys.argv[1:]))


if __name__ == "__main__":
    main()

"""threadbench command line: a thin typer app over compare/ (framework-free) and backends/ (lazy).

Nothing heavy is imported at module level: `python cli.py --help` loads neither a framework nor polars."""
from __future__ import annotations

import functools
import signal
import sys
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="How much inference throughput do you really get from several Python threads, "
                       "on PyTorch vs MLX (and plug-ins), on this machine?")
STATE = {"debug": False}

from compare import exits  # exit codes, defined once (framework-free, tiny)


def fail(message: str) -> None:
    typer.echo(f"threadbench: error: {message}", err=True)
    raise typer.Exit(exits.BAD_INPUT)


def guarded(fn):
    """Bad input -> one line on stderr and exit code 2; the traceback only with --debug."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from backends import RegistryError
        from compare.options import BadInput
        from compare.results import ResultsError
        try:
            return fn(*args, **kwargs)
        except (BadInput, ResultsError, RegistryError) as e:
            if STATE["debug"]:
                raise
            fail(str(e))
    return wrapper


@app.callback()
def main_options(debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors.")):
    STATE["debug"] = debug


@app.command("backends")
@guarded
def backends_cmd():
    """List every backend (built-in and plug-in), its devices, and why any device is unavailable."""
    import backends
    for name in backends.names():
        try:
            b = backends.load(name)
        except Exception as e:  # noqa: BLE001 - a broken plug-in is reported, not fatal
            typer.echo(f"{name}: cannot load ({type(e).__name__}: {e})")
            continue
        status = b.device_status()
        default = b.default_device()
        typer.echo(f"{name}  dtypes: {', '.join(b.dtypes)}  default device: {default or 'none'}")
        for dev in b.devices:
            why = status.get(dev)
            typer.echo(f"  {dev:5} {'available' if why is None else 'unavailable: ' + why}")


@app.command()
@guarded
def compare(
    ctx: typer.Context,
    backends_: str = typer.Option("torch,mlx", "--backends", "-b", help="Comma-separated backends (see `backends`)."),
    workloads_: str = typer.Option("mlp,block,transformer", "--workloads", "-w", help="mlp, block, transformer."),
    threads: str = typer.Option("1,2,4,8", "--threads", "-t", help="Thread counts, e.g. 1,2,4,8."),
    modes: str = typer.Option("sequential,threads", "--modes", "-m",
                              help="sequential, threads, streams, batched, offline (or 'all')."),
    device: str = typer.Option("auto", "--device", "-d",
                               help="auto (each backend's default), gpu, cpu, or a backend's own name (cuda, mps)."),
    dtype: str = typer.Option("float32", "--dtype", help="float32, bfloat16, float16 (comma-separated)."),
    duration: float = typer.Option(0.5, "--duration", help="Seconds per timed trial."),
    trials: int = typer.Option(5, "--trials", help="Timed trials per cell."),
    warmup: int = typer.Option(3, "--warmup", help="Warm-up ops per thread before timing."),
    size: Optional[str] = typer.Option(None, "--size", help="Workload size knobs, e.g. layers=2,seq=32,batch=8."),
    fp32_precision: str = typer.Option("highest", "--fp32-precision",
                                       help="float32 matmul modes to run, comma-separated: highest (true fp32), "
                                            "high (TF32); backends without the switch run float32 once as 'native'."),
    offline_k: str = typer.Option("1,8,64", "--offline-k", help="offline mode: requests per forward."),
    max_batch: int = typer.Option(0, "--max-batch", help="batched mode: most requests per forward (0 = threads)."),
    max_wait_ms: float = typer.Option(2.0, "--max-wait-ms", help="batched mode: wait to fill a batch."),
    intra_op_threads: Optional[int] = typer.Option(None, "--intra-op-threads",
                                                   help="Math-library threads per process (torch.set_num_threads; "
                                                        "numpy via threadpoolctl); default: each framework's own."),
    cell_timeout: Optional[float] = typer.Option(None, "--cell-timeout", help="Seconds before a cell counts as hung."),
    mem_limit_mb: Optional[float] = typer.Option(None, "--mem-limit-mb",
                                                 help="Host memory (MB) a cell's processes may use (default 75% of RAM)."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Run only the cells this results file lacks or that "
                                          "failed there; keeps the rest (writes back to it unless --out is given)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Results file (default results/runs/<date>-<host>-<id>.json)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
    json_: bool = typer.Option(False, "--json", help="Print the results document (JSON) on stdout instead of "
                               "the tables; progress and messages go to stderr."),
):
    """Run the matrix and print side-by-side throughput and scaling tables."""
    from dataclasses import replace

    from compare.measure.runner import Limits

    import workloads as W
    from compare import options as O
    from compare.cells import MODES, Cell
    from compare.measure.plan import Settings, all_devices, knob_names, plan
    import backends

    mode_list = list(MODES) if modes.strip() == "all" else O.names("--modes", modes, MODES, "mode")
    settings = Settings(
        backends=tuple(O.names("--backends", backends_, backends.names(), "backend")),
        workloads=tuple(O.names("--workloads", workloads_, list(W.WORKLOADS), "workload")),
        modes=tuple(mode_list),
        threads=tuple(O.int_list("--threads", threads)),
        dtypes=tuple(O.names("--dtype", dtype, ["float32", "bfloat16", "float16", "float64"], "dtype")),
        device=O.one_name("--device", device, sorted(all_devices()), "device"),
        offline_k=tuple(O.int_list("--offline-k", offline_k, hi=4096)),
        knobs=O.sizes(size, knob_names()),
    )
    precisions = tuple(O.names("--fp32-precision", fp32_precision, ["highest", "high"], "precision"))
    for opt, v in (("--duration", duration), ("--trials", trials), ("--cell-timeout", cell_timeout),
                   ("--mem-limit-mb", mem_limit_mb), ("--intra-op-threads", intra_op_threads)):
        O.positive(opt, v)
    if warmup < 0 or max_batch < 0 or max_wait_ms < 0:
        raise O.BadInput("--warmup, --max-batch and --max-wait-ms must not be negative")
    template = Cell(backend="", device="", dtype="", workload="", mode="", duration=duration, trials=trials,
                    warmup=warmup, fp32_precision=precisions[0], max_batch=max_batch, max_wait_ms=max_wait_ms,
                    intra_op_threads=intra_op_threads)
    settings = replace(settings, template=template, fp32_precisions=precisions)
    limits = Limits(cell_timeout=cell_timeout, mem_limit_mb=mem_limit_mb)
    argv = ["threadbench", *sys.argv[1:]]
    if resume is not None:
        flag = lambda p: f"--{p.replace('_', '-').rstrip('-')}"  # noqa: E731 - backends_ -> --backends
        O.no_matrix_with_resume([flag(p) for p in ctx.params
                                 if p not in RESUME_OPTIONS and ctx.get_parameter_source(p).name == "COMMANDLINE"],
                                sorted(flag(p) for p in RESUME_OPTIONS if p != "resume"))
        from compare.resume import resume_sweep
        raise typer.Exit(resume_sweep(resume, out, limits, quiet, argv, json_out=json_))
    from compare.session import run_sweep
    raise typer.Exit(run_sweep(settings, out=out, quiet=quiet, argv=argv, limits=limits, json_out=json_))


RESUME_OPTIONS = {"resume", "out", "quiet", "cell_timeout", "mem_limit_mb", "json_"}


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


# -- saved runs: report, diff, plot, publish (logic in compare/report.py, diff.py, plot.py, publish.py) ----------
FORMAT_HELP = "table (rich, the default), markdown, csv or json (csv/json: the per-cell summary, long format)."


@app.command()
@guarded
def report(
    runs: list[Path] = typer.Argument(..., help="Results files (or folders of them); several merge into one table.",
                                      show_default=False),
    format_: str = typer.Option("table", "--format", "-f", help=FORMAT_HELP),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write to this file instead of stdout."),
):
    """Re-render the side-by-side tables of saved runs; runs of different machines become column groups."""
    from compare.render.report import report as render
    render(runs, format_, out)


@app.command()
@guarded
def diff(
    a: Path = typer.Argument(..., help="Baseline results file (A).", show_default=False),
    b: Path = typer.Argument(..., help="Results file to compare with it (B).", show_default=False),
    threshold: float = typer.Option(0.10, "--threshold", help="Smallest change that counts (0.10 = 10%)."),
    alpha: float = typer.Option(0.05, "--alpha", help="Significance level of the Mann-Whitney U test on the trials."),
    format_: str = typer.Option("table", "--format", "-f", help="table, markdown, csv or json."),
    fail_on_regression: bool = typer.Option(False, "--fail-on-regression",
                                            help="Exit with code 1 when any cell regressed (for CI)."),
):
    """Per-cell ratio B÷A with a significance test; flags improvements and regressions, lists unmatched cells."""
    from compare.render.diff import diff as compare_runs
    d = compare_runs(a, b, format_, threshold, alpha)
    raise typer.Exit(exits.CELLS_FAILED if fail_on_regression and d.regressions else exits.OK)


@app.command()
@guarded
def plot(
    runs: list[Path] = typer.Argument(..., help="Results files (or folders of them).", show_default=False),
    out: Path = typer.Option(Path("scaling.png"), "--out", "-o", help="Image file; .png, .svg or .pdf."),
):
    """Scaling curves: ops/s vs threads per backend and mode, a panel per workload, the offline ceiling dashed.
    Needs matplotlib, the optional plot extra."""
    from compare.render.plot import plot as draw
    typer.echo(f"wrote {draw(runs, out)}", err=True)


@app.command()
@guarded
def publish(
    runs_dir: Path = typer.Option(Path("results/runs"), "--runs", help="Folder of results files to publish."),
    out_dir: Path = typer.Option(Path("results"), "--out-dir", help="Where README.md and the plots go."),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Draw results/<run>.png (needs matplotlib)."),
):
    """Rewrite results/README.md (tables, environment, caveats, command of every run) and results/<run>.png."""
    from compare.render.publish import publish as build
    written = build(runs_dir, out_dir, plots)
    typer.echo("wrote " + ", ".join(str(p) for p in written), err=True)


def main():
    # SIGTERM ends a sweep like Ctrl-C: the running cell is killed, finished cells stay saved. SIGINT too,
    # even where the shell started us with it ignored (a background job), where Python would leave it so.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    sys.exit(run_cli(sys.argv[1:]))


if __name__ == "__main__":
    main()

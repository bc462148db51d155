"""From long-format rows (one per cell and trial) to one summary row per cell: median throughput with a
95% confidence interval, spread, latency percentiles, speedup, %-of-ceiling and %-of-peak."""
from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import polars as pl
from scipy.stats import binom

from .cells import MODES
from .results import ROW_FIELDS

CELL_KEYS = ["machine", "backend", "device", "dtype", "fp32_precision", "workload", "size", "mode", "threads", "k"]
GROUP_KEYS = ["machine", "backend", "device", "dtype", "fp32_precision", "workload", "size"]
PEAK_WORKLOAD = "matmul"
CEILING_MODES = [m.name for m in MODES.values() if m.ceiling]
UNSTABLE_IQR = 0.10  # a cell whose trials spread more than this (IQR / median) is marked UNSTABLE

_SCHEMA = {f: pl.Utf8 for f in ("run_id", "machine", "backend", "device", "dtype", "fp32_precision", "workload",
                                "size", "mode", "batch_hist", "status", "cause", "device_name", "framework_version",
                                "verdict")}
_SCHEMA.update({f: pl.Int64 for f in ("threads", "k", "trial", "ops", "errors", "checked", "flops_per_op")})
_SCHEMA.update({f: pl.Float64 for f in ROW_FIELDS if f not in _SCHEMA})


def frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=_SCHEMA) if rows else pl.DataFrame(schema=_SCHEMA)


def median_ci(values: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """Distribution-free CI of the median from order statistics: (low, high, achieved coverage).

    The widest interval, [min, max], covers the median with probability 1 - 2 * 0.5**n; with 5 trials
    that is 93.8%, so the achieved level is reported rather than claimed."""
    x = np.sort(np.asarray(values, dtype=float))
    n = len(x)
    if n == 0:
        return math.nan, math.nan, math.nan
    if n == 1:
        return float(x[0]), float(x[0]), 0.0
    best = (0, 1.0 - 2 * binom.cdf(0, n, 0.5))  # j = 0 -> [x_(1), x_(n)]
    for j in range(1, n // 2):  # narrower intervals while they still reach the level
        cover = 1.0 - 2 * binom.cdf(j, n, 0.5)
        if cover < level:
            break
        best = (j, cover)
    j, cover = best
    return float(x[j]), float(x[n - 1 - j]), float(cover)


def mean_batch(hists: list[str]) -> float | None:
    """Mean requests per forward of the dynamic batcher, over every trial's batch-size histogram."""
    total = Counter()
    for h in hists:
        total.update({int(k): v for k, v in json.loads(h).items()})
    forwards = sum(total.values())
    return sum(k * v for k, v in total.items()) / forwards if forwards else None


def summarize(rows: list[dict]) -> pl.DataFrame:
    df = frame(rows)
    agg = df.group_by(CELL_KEYS, maintain_order=True).agg(
        pl.col("ops_per_s").drop_nulls().alias("trials"),
        pl.col("batch_hist").drop_nulls().alias("hists"),
        pl.col("ops_per_s").median().alias("ops_per_s"),
        (pl.col("ops_per_s").quantile(0.75, "linear") - pl.col("ops_per_s").quantile(0.25, "linear")).alias("iqr"),
        *(pl.col(c).median() for c in ("lat_p50_ms", "lat_p90_ms", "lat_p99_ms")),
        *(pl.col(c).first() for c in ("run_id", "status", "cause", "errors", "checked", "rel_err", "flops_per_op",
                                      "peak_rss_mb", "peak_device_mb", "device_name", "framework_version")),
    )
    ci = [median_ci(t) for t in agg["trials"].to_list()]
    batches = [mean_batch(h) for h in agg["hists"].to_list()]
    agg = agg.with_columns(
        pl.Series("ci_low", [c[0] for c in ci], dtype=pl.Float64),
        pl.Series("ci_high", [c[1] for c in ci], dtype=pl.Float64),
        pl.Series("ci_level", [c[2] for c in ci], dtype=pl.Float64),
        pl.col("trials").list.len().alias("n_trials"),
        pl.Series("mean_batch", batches, dtype=pl.Float64),
    ).with_columns(
        (pl.col("iqr") / pl.col("ops_per_s")).alias("iqr_rel"),
        (pl.col("ops_per_s") * pl.col("flops_per_op") / 1e12).alias("tflops"),
    ).with_columns((pl.col("iqr_rel") > UNSTABLE_IQR).fill_null(False).alias("unstable"))

    # speedup vs the backend's own single-thread figure (sequential; threads x1 if no sequential cell)
    base = (agg.filter(pl.col("mode").is_in(["sequential", "threads"]) & (pl.col("threads") == 1)
                       & pl.col("ops_per_s").is_not_null())
            .sort(pl.col("mode") != "sequential")
            .group_by(GROUP_KEYS, maintain_order=True).agg(pl.col("ops_per_s").first().alias("base_ops")))
    ceiling = (agg.filter(pl.col("mode").is_in(CEILING_MODES)).group_by(GROUP_KEYS)
               .agg(pl.col("ops_per_s").max().alias("ceiling_ops")))
    peak = (agg.filter((pl.col("workload") == PEAK_WORKLOAD) & pl.col("tflops").is_not_null())
            .group_by(["machine", "backend", "device", "dtype", "fp32_precision"])
            .agg(pl.col("tflops").max().alias("peak_tflops")))
    out = (agg.join(base, on=GROUP_KEYS, how="left", nulls_equal=True)
              .join(ceiling, on=GROUP_KEYS, how="left", nulls_equal=True)
              .join(peak, on=["machine", "backend", "device", "dtype", "fp32_precision"], how="left", nulls_equal=True))
    return out.with_columns(
        (pl.col("ops_per_s") / pl.col("base_ops")).alias("speedup"),
        (100 * pl.col("ops_per_s") / pl.col("ceiling_ops")).alias("pct_ceiling"),
        (100 * pl.col("tflops") / pl.col("peak_tflops")).alias("pct_peak"),
    ).drop("trials", "hists", "iqr")

"""What threadbench concludes from a host's figures, shared by the side that records them (compare.measure.host:
the probe, the GPU sampler) and the side that reports them (compare.render.hostinfo): when a probe says the
machine was busy, what limited a GPU cell, and the names both write. Plain constants and one pure function;
it measures nothing and imports nothing."""
from __future__ import annotations

GPU_DEVICES_OFF = {"cpu"}    # devices the sampler never samples (a CPU cell has no GPU to watch)
NVML_MISSING = "NVML not available"   # recorded where NVML (the optional nvidia-ml-py) is absent

# -- busy warnings (compare.render.hostinfo) ----------------------------------------------------------
# The start probe runs before the first cell and the end probe after the last, while threadbench itself
# is idle, so what they see busy is other work competing with the measurement for cores or the GPU.
BUSY_LOAD_FRACTION = 0.5   # a 1-minute load average above half the logical CPUs at the start: other work
#                            kept half the cores busy in the minute before the sweep. Not applied at the
#                            end, where the load average includes the sweep's own cells.
BUSY_CPU_PCT = 25.0        # CPU busy above 25% of all cores during a probe's interval, at start or end
QUIET_CPU_PCT = 3.0        # both probes' CPU busy under 3%: a high load average at the start is the minute
#                            before (an earlier run, seen as 2.1 on this 2-core machine), not work running now
BUSY_GPU_UTIL_PCT = 10.0   # GPU utilisation above 10% at start or end: no threadbench work runs on it then
#                            (catches other containers' jobs, whose processes NVML may not list)

# -- what limited a GPU cell (its mean utilisation: compare.measure.host.GpuSampler) -------------------
HOST_BOUND_UTIL_PCT = 50.0   # kernels ran less than half the time: the host (Python, dispatch, launches,
#                              synchronise) set the pace, and a faster CPU would speed the cell up
DEVICE_BOUND_UTIL_PCT = 90.0  # kernels ran at least 90% of the time: the GPU was the limit. NVML counts a
#                               GPU busy when any kernel runs, however few SMs it fills, so "device-bound"
#                               means "kept the GPU busy", not "used all of it"
LAUNCH_BOUND_FRACTION = 0.5  # a cell whose forwards/s reach half the launch probe's tiny-op rate spends at
#                              least half of each forward on the per-op floor (dispatch, launch, synchronise)


def bound(device: str, util_mean: float | None, forwards_per_s: float | None,
          launch_per_s: float | None) -> tuple[str | None, str]:
    """(label, reason): "cpu" for CPU cells; for GPU cells "host-bound", "device-bound" or "mixed" from the
    mean GPU utilisation where NVML measured it, else "host-bound" when the cell's forwards/s come within
    LAUNCH_BOUND_FRACTION of the launch probe's rate; (None, why) when neither is known."""
    if device == "cpu":
        return "cpu", "runs on the CPU"
    if util_mean is not None:
        if util_mean < HOST_BOUND_UTIL_PCT:
            return "host-bound", f"GPU busy {util_mean:.0f}% of the time (< {HOST_BOUND_UTIL_PCT:.0f}%)"
        if util_mean >= DEVICE_BOUND_UTIL_PCT:
            return "device-bound", f"GPU busy {util_mean:.0f}% of the time (>= {DEVICE_BOUND_UTIL_PCT:.0f}%)"
        if forwards_per_s and launch_per_s and forwards_per_s >= LAUNCH_BOUND_FRACTION * launch_per_s:
            return "host-bound", (f"GPU busy {util_mean:.0f}%, and {forwards_per_s:.3g} forwards/s reach "
                                  f"{forwards_per_s / launch_per_s:.0%} of the launch rate")
        return "mixed", f"GPU busy {util_mean:.0f}% of the time"
    if forwards_per_s and launch_per_s:
        share = forwards_per_s / launch_per_s
        if share >= LAUNCH_BOUND_FRACTION:
            return "host-bound", f"{forwards_per_s:.3g} forwards/s reach {share:.0%} of the launch rate"
        return None, f"{share:.0%} of the launch rate and no GPU utilisation recorded: not known"
    return None, "no GPU utilisation or launch rate recorded"

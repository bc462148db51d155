"""How late and how coarse is NVML's GPU utilisation? (what compare.measure.host.NVML_LAG_PERIODS rests on)

A matmul loop is switched on for 2 s, off for 1 s, then on for 0.2 s three times with 0.15 s gaps, while a
thread reads nvmlDeviceGetUtilizationRates every 20 ms; prints the phases, the reads, and the driver's own
sample spacing (nvmlDeviceGetSamples). Needs torch with CUDA and nvidia-ml-py. A report, not a test.

    python benchmarks/nvml_lag.py

On an H100 (driver 580): the value changes every 0.2 s and a read at t describes about [t - 0.29, t - 0.09].
"""
import threading, time, torch, pynvml
pynvml.nvmlInit(); h = pynvml.nvmlDeviceGetHandleByIndex(0)
a = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)
reads, phases = [], []
stop = threading.Event()
def sampler():
    while not stop.is_set():
        reads.append((time.perf_counter(), pynvml.nvmlDeviceGetUtilizationRates(h).gpu)); time.sleep(0.02)
def busy(s):
    t0 = time.perf_counter(); phases.append(("busy", t0))
    while time.perf_counter() - t0 < s:
        (a @ a); torch.cuda.synchronize()
    phases.append(("idle", time.perf_counter()))
(a @ a); torch.cuda.synchronize()
th = threading.Thread(target=sampler); th.start(); time.sleep(1.0)
t0 = time.perf_counter(); busy(2.0); time.sleep(1.0)
for _ in range(3): busy(0.2); time.sleep(0.15)
time.sleep(1.0); stop.set(); th.join()
print("phases:", " ".join(f"{k}@{t - t0:.2f}" for k, t in phases))
print("reads (t from first busy, util):", " ".join(f"{t - t0:.2f}:{u}" for t, u in reads))
try:
    typ, samples = pynvml.nvmlDeviceGetSamples(h, pynvml.NVML_GPU_UTILIZATION_SAMPLES, 0)
    ts = [s.timeStamp for s in samples]
    print("driver samples:", len(samples), "spacing us:", sorted(b - a for a, b in zip(ts, ts[1:]))[len(ts)//2] if len(ts) > 2 else None)
    print("last 40:", " ".join(str(s.sampleValue.uiVal) for s in samples[-40:]))
except Exception as e:
    print("nvmlDeviceGetSamples:", e)

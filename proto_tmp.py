import time
from compare.measure import loadgen, queueing
for d in (0.002, 0.005):
    bound = 0.050
    t0=time.time(); theory = queueing.peak_rate(bound, d, 2); print("peak_rate", d, theory, round(time.time()-t0,2))
    for stalls in ((), ((0.3, loadgen.STALL_S),)):
        t0=time.time()
        res = loadgen.simulate_search("threads", 2, d, bound, start=0.6 * theory, seed=3, stalls=stalls)
        print(stalls, res.peak, res.above, res.confirmed, res.note, round(time.time()-t0,1),"s", theory)
        for s in res.steps[:4]: print("  ", round(s.rate), s.kind, s.queries, round(s.seconds,2), s.verdict[:70])

"""What measures: plan the cells, run each in its own worker process, time the modes, check outputs, record
the environment. Nothing here renders a table or a plot; the results it produces are plain data
(compare.cells, compare.results). Its layers, each importing only those before it: clocks, harness,
schedule; build, procs; threads, batcher, processes, loadgen, server; registry; worker; runner
(plan, interpreters, verify, host, env, lock, queueing stand beside them; tests/test_layers.py keeps the arrows down)."""

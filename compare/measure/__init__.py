"""What measures: plan the cells, run each in its own worker process, time the modes, check outputs, record
the environment. Nothing here renders a table or a plot; the results it produces are plain data
(compare.cells, compare.results)."""

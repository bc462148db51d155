"""Exit codes, defined once: the CLI, a sweep and `diff --fail-on-regression` all return these."""
OK = 0              # every cell finished ok (or was too slow, unsupported, unavailable or skipped)
CELLS_FAILED = 1    # the sweep finished but some cells failed (crash, timeout, error, memory, wrong); a regression
BAD_INPUT = 2       # an option, a name, a path or a results file: one line on stderr, nothing run
INTERRUPTED = 130   # Ctrl-C or SIGTERM: the running cell killed, finished cells saved

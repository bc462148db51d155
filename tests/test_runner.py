"""The parent side of a cell (compare.measure.runner): what it does when it must kill a cell's worker."""
import signal
import subprocess
import sys
import time

from compare.measure import runner


def test_a_killed_cell_is_reaped_even_when_an_interrupt_left_popens_lock_taken(monkeypatch):
    """SIGTERM or Ctrl-C raised inside Popen.poll() can leave Popen's own lock taken; killing the cell must
    still reap its worker and return, where a bare popen.wait() blocked forever (a sweep hung on SIGTERM)."""
    monkeypatch.setattr(runner, "REAP_S", 0.2)
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    try:
        worker._waitpid_lock.acquire()  # as the interrupt leaves it (CPython's subprocess)
        t0 = time.monotonic()
        runner._kill_group(worker)
        assert worker.returncode == -signal.SIGKILL and time.monotonic() - t0 < 30
    finally:
        if worker.returncode is None:
            worker.kill()

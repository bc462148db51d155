"""Make the threadbench core (backends, workloads, compare) importable when it is not pip-installed:
these tests run from the threadbench repository, three levels up."""
import sys
from pathlib import Path

try:
    import backends  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

"""The interop tests drive the gateway as a subprocess with the helpers of tests/gb28181 (``gwproc``)."""

from __future__ import annotations

import sys
from pathlib import Path

_GB28181_TESTS = str(Path(__file__).resolve().parents[1] / "gb28181")
if _GB28181_TESTS not in sys.path:
    sys.path.insert(0, _GB28181_TESTS)

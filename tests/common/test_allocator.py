"""glibc's allocator keeps freed memory: request-sized buffers stop costing page faults. Counted as minor
page faults (getrusage) in a fresh interpreter, which are a count, not a timing."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

from loopline_common.allocator import MAX_MMAP_THRESHOLD_MIB, keep_freed_memory

PROBE = """
import json, resource, sys
if sys.argv[1] == "tuned":
    from loopline_common.allocator import keep_freed_memory
    assert keep_freed_memory(mmap_mib=16, trim_mib=64)
template = b"x" * 570
def build():
    # what the prediction log does for a 1,000-row request: one ~570 KiB buffer, filled, copied, freed
    return bytes(bytearray(template * 1000))
for _ in range(20):
    build()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(200):
    build()
print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before))
"""


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True, timeout=60)
    return int(json.loads(out.stdout))


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's (musl, macOS: no such tunable)")
def test_kept_memory_serves_request_sized_buffers_without_page_faults() -> None:
    default, tuned = _faults("default"), _faults("tuned")
    # By default each ~570 KiB buffer is fresh memory from the kernel: about 140 faults per buffer.
    assert default > 200 * 100, default
    assert tuned < default / 20, (tuned, default)


def test_thresholds_out_of_glibc_range_are_refused() -> None:
    with pytest.raises(ValueError, match="mmap threshold"):
        keep_freed_memory(mmap_mib=MAX_MMAP_THRESHOLD_MIB + 1)
    with pytest.raises(ValueError):
        keep_freed_memory(trim_mib=0)

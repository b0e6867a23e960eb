#!/usr/bin/env python
"""Benchmark: one full gpu_health check of the h100-sxm-8 fake topology, against `import pynvml`.

Prints the median wall time of one health check (collect + evaluate, what the module runs), the
median time of `import pynvml` in a fresh interpreter, and their ratio. Target: under 0.3 s of
module work for 8 GPUs on a 2-core machine. Run: `make bench` (or this file with the venv's python).
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAKE = os.path.join(REPO, "tests", "fake_nvml")
sys.path.insert(0, os.path.join(REPO, "tests"))
from conftest import COLLECTIONS  # noqa: E402  (importing it links ansible_collections.inferops.gpu)


def fresh_import_seconds(runs):
    """`import pynvml` alone, each in a new interpreter, minus that interpreter's bare start."""
    def timed(code):
        out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
        return float(out)
    code = "import time; t=time.perf_counter(); import pynvml; print(time.perf_counter()-t)"
    return [timed(code) for _run in range(runs)]


def cold_check_seconds(runs, root):
    """A fresh interpreter: import pynvml and the module_utils, load NVML, one check (what one
    module invocation pays, minus Ansible's own AnsiballZ start-up)."""
    code = (
        "import sys, time; t = time.perf_counter(); sys.path.insert(0, %r);"
        "from ansible_collections.inferops.gpu.plugins.module_utils.gpu_health_checks import run_health;"
        "run_health(sysfs_root=%r, procfs_root=%r, kernel_log=%r, expected_gpu_count=8);"
        "print(time.perf_counter() - t)"
    ) % (COLLECTIONS, os.path.join(root, "sys"), os.path.join(root, "proc"), os.path.join(root, "kmsg"))
    env = dict(os.environ, LD_LIBRARY_PATH=os.path.join(FAKE, "build"))
    return [float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                                 env=env).stdout) for _run in range(runs)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--topology", default="h100-sxm-8")
    args = parser.parse_args()

    subprocess.run(["make", "-s", "-C", FAKE], check=True)
    import ctypes
    ctypes.CDLL(os.path.join(FAKE, "build", "libnvidia-ml.so.1"), mode=ctypes.RTLD_GLOBAL)
    topology = os.path.join(FAKE, "topologies", args.topology + ".conf")
    os.environ["FAKE_NVML_TOPOLOGY"] = topology
    root = tempfile.mkdtemp(prefix="gpu-health-bench-")
    subprocess.run([sys.executable, os.path.join(FAKE, "mkroot.py"), topology, root], check=True)

    assert COLLECTIONS in sys.path
    from ansible_collections.inferops.gpu.plugins.module_utils.gpu_health_checks import run_health

    def one_check():
        start = time.perf_counter()
        facts = run_health(sysfs_root=os.path.join(root, "sys"), procfs_root=os.path.join(root, "proc"),
                           kernel_log=os.path.join(root, "kmsg"), shm_path="/dev/shm", expected_gpu_count=8)
        return time.perf_counter() - start, facts

    one_check()  # warm-up: first dlopen and pynvml's function-pointer cache
    samples, facts = [], None
    for _run in range(args.runs):
        elapsed, facts = one_check()
        samples.append(elapsed)
    check = statistics.median(samples)
    imports = fresh_import_seconds(max(5, args.runs // 3))
    import_median = statistics.median(imports)
    cold = statistics.median(cold_check_seconds(max(5, args.runs // 3), root))
    print("topology:                     %s (%d GPUs, %d pairs, %d checks)" % (
        args.topology, facts["gpu_count"], len(facts["pairs"]), len(facts["checks"])))
    print("health check, median of %3d:  %.4f s (min %.4f, max %.4f)" % (
        args.runs, check, min(samples), max(samples)))
    print("import pynvml, median of %3d: %.4f s" % (len(imports), import_median))
    print("ratio check / import:         %.2f" % (check / import_median))
    print("cold check (new interpreter): %.4f s (imports + NVML load + one check)" % cold)
    print("target (< 0.3 s per check):   %s" % ("met" if max(check, cold) < 0.3 else "MISSED"))


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Benchmark: site.yml on a converged host (a no-op run) against a facts-and-ping baseline.

Starts one simulated GPU host (a Debian 13 systemd container bench-noop-<pid>-1, fake NVML
pcie-4-acs, see benchhosts.py), converges site.yml once with the roles a plain container runs
(default: container_runtime with Docker inside, nccl_tuning, gpu_health; nvidia_driver,
cuda_toolkit and xinference off), then times N runs of site.yml and N runs of baseline.yml (facts
and ping) on it, alternating, and prints the medians and their ratio. Target: the no-op run under
8x the baseline. The host is removed at the end, also on Ctrl-C or failure. Prints figures only,
asserts nothing. Run: `make bench` (or this file with the venv's python).
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchhosts  # noqa: E402  (a sibling module, not a package)

TARGET_RATIO = 8.0


def main():
    args, fleet = benchhosts.start(
        "noop", __doc__.splitlines()[0], 5, "container_runtime,nccl_tuning,gpu_health",
        lambda parser: parser.add_argument("--keep", action="store_true", help="leave the host running at the end"))
    site = os.path.join(benchhosts.REPO, "playbooks", "site.yml")
    baseline = os.path.join(benchhosts.HERE, "baseline.yml")
    try:
        print("roles on:  %s" % ", ".join(fleet.roles))
        print("roles off: %s" % ", ".join(r for r in benchhosts.ALL_ROLES if r not in fleet.roles))
        print(benchhosts.machine_line(), flush=True)
        start = time.monotonic()
        fleet.start(1)
        fleet.prepare(1)
        converge, _cpu, _rc, recap = fleet.playbook("noop-converge", site, 1)
        print("host %s: site.yml converge %.0f s (changed=%d); start + prepare + converge %.0f s" % (
            fleet.hosts[0], converge, recap["changed"], time.monotonic() - start), flush=True)

        samples = {"site": [], "baseline": []}
        cpu = {"site": [], "baseline": []}
        changed, tasks = [], ""
        loads = [benchhosts.loadavg()]
        for run in range(1, args.runs + 1):
            # Alternating, so that a burst of load on the shared machine hits both sides.
            for name, playbook in (("baseline", baseline), ("site", site)):
                wall, used, _rc, recap = fleet.playbook("noop-%s" % name, playbook, 1)
                samples[name].append(wall)
                cpu[name].append(used)
                if name == "site":
                    changed.append(recap["changed"])
                    tasks = "%d ok, %d skipped" % (recap["ok"], recap["skipped"])
            loads.append(benchhosts.loadavg())
            print("  run %d/%d: baseline %.1f s, site.yml %.1f s (changed=%d), load %s" % (
                run, args.runs, samples["baseline"][-1], samples["site"][-1], changed[-1], loads[-1]), flush=True)

        site_median, site_spread = benchhosts.median(samples["site"])
        base_median, base_spread = benchhosts.median(samples["baseline"])
        ratio = site_median / base_median
        print()
        print("no-op benchmark: site.yml on a converged host vs facts + ping (median of %d runs each)" % args.runs)
        print("  %-34s %9s %16s %14s" % ("playbook", "wall", "spread", "ctrl CPU"))
        row = "  %-34s %7.1f s %16s %12.1f s"
        print(row % ("baseline.yml (facts + ping)", base_median, base_spread, benchhosts.median(cpu["baseline"])[0]))
        print(row % ("site.yml, no-op (changed=%s)" % max(changed), site_median, site_spread,
                     benchhosts.median(cpu["site"])[0]))
        print("  task results per run: baseline 2 ok; site.yml %s" % tasks)
        print("  ratio site/baseline: %.1fx (target: under %.0fx) -> %s" % (
            ratio, TARGET_RATIO, "within target" if ratio < TARGET_RATIO else "OVER TARGET"))
        print("  load average during the runs (1/5/15 min): %s" % " | ".join(loads))
        print("  logs: .cache/logs/bench-noop-*.log")
    finally:
        if args.keep:
            print("kept: %s (docker rm -f -v %s)" % (" ".join(fleet.hosts), " ".join(fleet.hosts)))
        else:
            fleet.remove()


if __name__ == "__main__":
    main()

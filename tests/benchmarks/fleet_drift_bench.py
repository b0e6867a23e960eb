#!/usr/bin/env python
"""Benchmark: drift.yml (detect) on fleets of 1, 4 and 8 simulated GPU hosts, and Ansible settings.

Starts 8 simulated GPU hosts (Debian 13 systemd containers bench-fleet-<pid>-<n>, fake NVML
pcie-4-acs, see benchhosts.py), converges site.yml on them once with the roles a plain container
runs cheaply (default: nccl_tuning, gpu_health), then:

1. runs drift.yml in detect mode on fleets of 1, 4 and 8 of them and prints wall time and
   controller CPU seconds (getrusage(RUSAGE_CHILDREN) deltas: ansible-playbook, its workers and the
   docker CLI calls of the Docker connection), in total and per host;
2. on the 8-host fleet, one setting at a time against the reference (ansible.cfg of the checkout:
   forks 5, pipelining on, no fact cache, strategy linear): forks 16, pipelining off, fact caching
   (jsonfile, gathering smart; measured on the run after a warm-up that fills the cache), strategy
   free.

The hosts are removed at the end, also on Ctrl-C or failure. Prints figures only, asserts
nothing. Run: `make bench` (or this file with the venv's python).
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchhosts  # noqa: E402  (a sibling module, not a package)

SIZES = (1, 4, 8)


def drift(fleet, count, label, runs, report_dir, **settings):
    """Median wall and controller CPU of `runs` drift.yml detect runs on the first `count` hosts."""
    env = fleet.env(callbacks_enabled="inferops.gpu.drift_report", **settings)
    playbook = os.path.join(benchhosts.REPO, "playbooks", "drift.yml")
    walls, cpus, rcs = [], [], []
    for _run in range(runs):
        # 0: no drift; 2: drift found (still a complete detect run, reported below).
        wall, cpu, rc, _recap = fleet.playbook(
            "fleet-%s" % label, playbook, count, ["-e", "drift_report_dir=" + report_dir], env=env, ok_rcs=(0, 2))
        walls.append(wall)
        cpus.append(cpu)
        rcs.append(rc)
    return benchhosts.median(walls)[0], benchhosts.median(cpus)[0], max(rcs)


def main():
    args, fleet = benchhosts.start(
        "fleet", __doc__.splitlines()[0], 1, "nccl_tuning,gpu_health",
        lambda parser: parser.add_argument("--skip-settings", action="store_true", help="only the fleet sizes, no settings"))
    report_dir = os.path.join(fleet.workdir, "drift-report")
    site = os.path.join(benchhosts.REPO, "playbooks", "site.yml")
    try:
        print("roles on:  %s" % ", ".join(fleet.roles))
        print("roles off: %s" % ", ".join(r for r in benchhosts.ALL_ROLES if r not in fleet.roles))
        print(benchhosts.machine_line(), flush=True)
        start = time.monotonic()
        fleet.start(max(SIZES))
        fleet.prepare(max(SIZES))
        wall, _cpu, rc, recap = fleet.playbook("fleet-converge", site, max(SIZES), env=fleet.env(forks=16),
                                               ok_rcs=(0, 2))
        if rc:
            # A host that failed in the first converge (seen: a handler's module payload gone from
            # /tmp while systemd-logind restarted) gets the rerun an operator would give it.
            print("first converge failed on %d host(s) (.cache/logs/bench-fleet-converge-1.log): once more" % (
                recap["failed"]), flush=True)
            os.replace(os.path.join(benchhosts.LOGS, "bench-fleet-converge.log"),
                       os.path.join(benchhosts.LOGS, "bench-fleet-converge-1.log"))
            wall, _cpu, rc, recap = fleet.playbook("fleet-converge", site, max(SIZES), env=fleet.env(forks=16))
        print("%d hosts converged: site.yml %.0f s (changed=%d, failed=%d); start + prepare + converge %.0f s" % (
            max(SIZES), wall, recap["changed"], recap["failed"], time.monotonic() - start), flush=True)

        print()
        print("drift.yml detect, reference settings (forks 5, pipelining on, no fact cache, linear); "
              "median of %d run(s)" % args.runs)
        print("  %5s %9s %11s %13s %15s %6s  %s" % (
            "hosts", "wall", "wall/host", "ctrl CPU", "ctrl CPU/host", "exit", "load average (1/5/15) after"))
        per_host = {}
        for count in SIZES:
            wall, cpu, rc = drift(fleet, count, "drift-%d" % count, args.runs, report_dir)
            per_host[count] = cpu / count
            print("  %5d %7.1f s %9.1f s %11.1f s %13.2f s %6d  %s" % (
                count, wall, wall / count, cpu, cpu / count, rc, benchhosts.loadavg()), flush=True)
        print("  exit 0: no drift on any host (the converged fleet is clean); 2 would be drift found")
        print("  linear extrapolation to 1,000 hosts: %.0f controller CPU seconds per detect run "
              "(%.2f s/host at 8 hosts)" % (per_host[8] * 1000, per_host[8]))

        if not args.skip_settings:
            count = max(SIZES)
            print()
            print("Ansible settings on the %d-host fleet, one at a time against the reference "
                  "(median of %d run(s))" % (count, args.runs))
            print("  %-36s %9s %11s %10s %10s  %s" % (
                "setting", "wall", "ctrl CPU", "wall vs ref", "CPU vs ref", "load average after"))
            cache_dir = os.path.join(fleet.workdir, "facts")
            cases = (
                ("reference: forks 5", {"forks": 5}),
                ("forks 16", {"forks": 16}),
                ("pipelining off", {"forks": 5, "pipelining": False}),
                ("fact cache jsonfile (smart gathering)", {
                    "forks": 5, "gathering": "smart", "cache_plugin": "ansible.builtin.jsonfile",
                    "cache_plugin_connection": cache_dir, "cache_plugin_timeout": 86400}),
                ("strategy free", {"forks": 5, "strategy": "free"}),
            )
            reference = None
            for label, settings in cases:
                if "cache_plugin" in settings:
                    # Warm-up: the first run with the cache on gathers and fills it.
                    drift(fleet, count, "settings-warmup", 1, report_dir, **settings)
                try:
                    wall, cpu, _rc = drift(fleet, count, "settings", args.runs, report_dir, **settings)
                except RuntimeError as error:
                    print("  %-36s failed: %s" % (label, error), flush=True)
                    continue
                reference = reference or (wall, cpu)
                print("  %-36s %7.1f s %9.1f s %+9.0f%% %+9.0f%%  %s" % (
                    label, wall, cpu, 100 * (wall / reference[0] - 1), 100 * (cpu / reference[1] - 1),
                    benchhosts.loadavg()), flush=True)
        print("  logs: .cache/logs/bench-fleet-*.log")
    finally:
        fleet.remove()


if __name__ == "__main__":
    main()

"""CPU of one technician lookup for the whole machine (the issue's target: at most 10 ms).

    .venv/bin/python bench/bench_tech_lookup.py [--duration 6] [--threads 4] [--rounds 2]

Starts Vigil as ``bench_gateway_properties`` does (PostgreSQL + RabbitMQ when they answer, the
embedded default otherwise), seeds one monitored property with an emergency contact, then:

1. measures every process group's CPU while nothing is asked (relays and workers poll, health
   checks run): the idle rate;
2. loads ``POST /api/v1/tech/lookup`` through the gateway (technicians rotating their address every
   20 lookups, the property service's limit per address and minute) and measures each group's CPU
   over the window.

The printed CPU per lookup of a group is its CPU over the window, less its idle rate over the same
time, divided by the lookups answered: what a lookup costs, not what the idle installation burns
between lookups (on a loaded machine a slow window would otherwise be charged the idle polling).
The total is the gateway, the property and customer services, the other Vigil processes (the
audit write's outbox, the relays) and the PostgreSQL backends of this run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time

import bench_gateway_properties as bench
import benchkit

GOAL_MS = 10.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=6.0, help="seconds measured per round")
    parser.add_argument("--warmup", type=float, default=1.5)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2, help="keeps the round with the least CPU")
    args = parser.parse_args(argv)
    var_dir = tempfile.mkdtemp(prefix="vigil-bench-")
    stack = databases = None
    try:
        stack, databases, backend = bench.start_stack(var_dir)
        data = bench.seed(stack)
        prefix = f"vigil_t{databases.run_id}_" if backend == "postgres" else None
        lookup = json.dumps({"account_number": "BENCH-1", "pin": "2468"}).encode()
        target = bench.Target(
            "gateway", stack.gateway_url, "POST", "/api/v1/tech/lookup", lookup, bearer=data["token"], vary_address=True
        )
        print(
            f"technician lookup: {os.cpu_count()} CPU(s), {bench.describe_backend(backend)}, "
            f"{args.processes} x {args.threads} connection(s), {args.duration:g} s per round",
            flush=True,
        )
        idle_window = 3.0
        before = bench.cpu_by_group(stack, set(), prefix)
        time.sleep(idle_window)
        after = bench.cpu_by_group(stack, set(), prefix)
        idle = {group: max(0.0, after[group] - before.get(group, 0.0)) / idle_window for group in after}
        best = None
        with multiprocessing.get_context("fork").Pool(args.processes) as pool:
            for round_ in range(args.rounds):
                result = bench.measure(
                    pool, target, args.processes, args.threads, args.warmup, args.duration, round_, stack, prefix
                )
                answered = result.rps * args.duration
                net = {
                    group: max(0.0, ms - idle.get(group, 0.0) * 1000 * args.duration / answered) if answered else ms
                    for group, ms in result.cpu_ms.items()
                }
                total = sum(ms for group, ms in net.items() if group != "load generator")
                print(
                    f"  round {round_ + 1}: {result.rps:.1f} lookups/s, p50 {result.p50_ms:.1f} ms, "
                    f"p99 {result.p99_ms:.1f} ms, errors {result.errors}; CPU ms per lookup {total:.2f}",
                    flush=True,
                )
                if result.rps and (best is None or total < best[0]):
                    best = (total, net, result)
        assert best is not None, "no lookup was answered"
        total, net, result = best
        print("CPU ms per lookup, idle background removed (best round):")
        for group, ms in sorted(net.items(), key=lambda kv: -kv[1]):
            print(f"  {group:<16}{ms:8.2f}   (idle rate {idle.get(group, 0.0) * 1000:.1f} ms/s)")
        verdict = "meets" if total <= GOAL_MS else "misses"
        print(f"whole machine (without the load generator): {total:.2f} ms: {verdict} the {GOAL_MS:g} ms target")
        print(f"(load average {os.getloadavg()[0]:.1f}: other work on this machine skews the figures)")
        return 0 if total <= GOAL_MS else 1
    finally:
        benchkit.stop_stack(stack, databases, var_dir)


if __name__ == "__main__":
    sys.exit(main())

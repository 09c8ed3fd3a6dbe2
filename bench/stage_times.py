"""Where a local run's wall time goes, stage by stage: runs `thresher run CONFIG` in this process with
Beam's FnApiRunner instrumented to time every fused stage it executes, then prints the launcher's
phases (imports, validation, graph, until the first bundle) and the slowest stages. Used for the
issue 14 analysis in docs/benchmarks.md:

    python bench/stage_times.py CONFIG.yaml [--set runner.options.direct_running_mode=multi_processing]
"""

from __future__ import annotations

import argparse
import time

START = time.perf_counter()

from apache_beam.runners.portability.fn_api_runner import fn_runner  # noqa: E402

import thresher.pipeline.run as run  # noqa: E402
from thresher.pipeline.config import load_config  # noqa: E402

TIMES: dict[str, float] = {}
FIRST: dict[str, float] = {}


def _timed_bundle(original):
    def execute(self, context, bundle_manager, bundle_input):
        FIRST.setdefault("bundle", time.perf_counter())
        start = time.perf_counter()
        try:
            return original(self, context, bundle_manager, bundle_input)
        finally:
            name = bundle_manager.stage.name
            TIMES[name] = TIMES.get(name, 0.0) + time.perf_counter() - start
    return execute


def _timed_graph(original):
    def build(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            FIRST["graph"] = time.perf_counter() - start
    return build


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE")
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    fn_runner.FnApiRunner._execute_bundle = _timed_bundle(fn_runner.FnApiRunner._execute_bundle)
    run.build_graph = _timed_graph(run.build_graph)
    imported = time.perf_counter()
    config = load_config(args.config, args.set)
    validated = time.perf_counter()
    result = run.run_pipeline(config)
    end = time.perf_counter()
    total = sum(TIMES.values())
    print(f"engine {result.stats.get('local_runner')}; wall {end - START:.1f} s: imports {imported - START:.2f}, "
          f"validation {validated - imported:.2f}, graph {FIRST['graph']:.2f}, until the first bundle "
          f"{FIRST['bundle'] - validated:.2f}; {len(TIMES)} stages ran for {total:.1f} s")
    small = [t for t in TIMES.values() if t < 0.2]
    print(f"{len(small)} stages under 0.2 s: {sum(small):.1f} s together; the slowest:")
    for name, seconds in sorted(TIMES.items(), key=lambda kv: -kv[1])[:args.top]:
        print(f"  {seconds:6.2f} s  {name[:140]}")


if __name__ == "__main__":
    main()

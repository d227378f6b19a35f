"""Benchmark: how fast the simulator writes events to a file (goal: at least 50,000 events/s).

Run: python bench/simulator.py [--sites 8] [--days 7]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dashboard.simulator import Config, FileSink, simulate  # noqa: E402

END = datetime(2026, 11, 18, 16, 0, tzinfo=UTC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=8)
    parser.add_argument("--days", type=float, default=7)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rates = []
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "events.jsonl")
        for run in range(args.runs):
            sink = FileSink(path)
            started = time.perf_counter()
            progress = simulate(Config(sites=args.sites, seed=run + 1, history_days=args.days), sink, end=END)
            sink.close()
            seconds = time.perf_counter() - started
            rates.append(progress.events / seconds)
            size = os.path.getsize(path)
            print(
                f"run {run + 1}: {progress.events:,} events in {seconds:.2f} s = {rates[-1]:,.0f} events/s, "
                f"{size / 1e6:.0f} MB"
            )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {
        "sites": args.sites,
        "days": args.days,
        "events_per_s_median": sorted(rates)[len(rates) // 2],
        "peak_rss_mb": round(peak_mb),
    }
    print(f"median {result['events_per_s_median']:,.0f} events/s (goal 50,000), peak RSS {peak_mb:.0f} MB")
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / "simulator.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

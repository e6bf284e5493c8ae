"""Relevance feedback on phantoms: diagnosis precision@10 before and after one round of marks.

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/feedback_eval.py --archive 300 --queries 100 --work /tmp/feedback

A simulated user marks, of each search's top 10, the cases of the query's diagnosis right and the
rest not this; the constants are chosen on the first half of the queries, reported on the second.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from evaluation.feedback_run import feedback_report, feedback_setup
from generation.bundle import Bundle
from generation.presets import SHIPPED_BUNDLE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=int, default=300)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--seed", type=int, default=35)
    parser.add_argument("--bundle", type=Path, default=SHIPPED_BUNDLE)
    parser.add_argument("--work", type=Path, required=True, help="an empty folder for the archive")
    args = parser.parse_args()

    report = feedback_report(feedback_setup(args.work, Bundle.open(args.bundle), args.archive, args.queries, args.seed))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

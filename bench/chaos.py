"""``make chaos``: the deployed pipeline in-process under AWS and Kubernetes faults, kills and
redeliveries, checked against a model (tests/chaos/model.py) for a bounded time.

    python bench/chaos.py [--seed N] [--minutes M] [--examples K] [--steps S]

Prints ``chaos: seed N`` first (stderr: rerun with it to replay), progress on stderr, and ends with
ONE JSON line on stdout (seed, steps, events_sent, events_acknowledged, events_archived, lost,
duplicates, acknowledged_without_store, faults_injected, kills, verify_ok), over the examples that
ran to their end. Exit 1 when an invariant failed (the traceback on stderr ends with the failing
steps and the seed and round that found them; the JSON line is printed anyway).

``--minutes`` is a hard bound: past it the example in progress is abandoned, and a failure is shrunk
only until then (then replayed once to print it): the run ends about a minute after M at most (two
runs of the failing example, plus starting and stopping moto).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--examples", type=int, default=None, help="stop after this many examples instead")
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    print(f"chaos: seed {seed}", file=sys.stderr, flush=True)

    from tests.chaos import model

    failed = False
    # Everything the functions and Hypothesis print goes to stderr: stdout holds only the JSON line. The
    # file descriptor too: a metrics flush once reached the real stdout past redirect_stdout (seed 5).
    sys.stdout.flush()
    stdout = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            stats = model.run(seed, minutes=None if args.examples else args.minutes, examples=args.examples,
                              steps=args.steps)  # fmt: skip
    except Exception:
        traceback.print_exc()
        failed = True
        stats = model._Run.stats
    finally:
        sys.stdout.flush()
        os.dup2(stdout, 1)
        os.close(stdout)
    line = stats.line()
    print(json.dumps(line), flush=True)
    bad = line["lost"] or line["duplicates"] or line["acknowledged_without_store"] or not line["verify_ok"]
    return 1 if failed or bad else 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python3
"""Reads a run's --tensorboard event files with the `tensorboard` package's own reader.

Checks that every scalar of metrics.csv is there, per epoch, with the same value (to float32), that
every layer's gradient norm (grad_norm/<layer>) has one positive value per epoch, and prints the
tags. Outside CI: needs PyPI tensorboard (pip install tensorboard).
Usage: scripts/tensorboard_check.py RUN_DIR
"""
import csv, glob, os, sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
import numpy as np


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    run = sys.argv[1]
    files = glob.glob(os.path.join(run, "events.out.tfevents.*"))
    if not files:
        sys.exit(f"{run}: no events.out.tfevents.* (train with --tensorboard)")
    acc = EventAccumulator(run)
    acc.Reload()
    tags = acc.Tags()["scalars"]
    print(f"{len(files)} event file(s); scalar tags: {', '.join(sorted(tags))}")
    with open(os.path.join(run, "metrics.csv")) as f:
        rows = list(csv.DictReader(f))
    columns = {"train/loss": "train_loss", "train/accuracy": "train_acc", "test/loss": "test_loss",
               "test/accuracy": "test_acc", "lr": "lr", "images_per_second": "images_per_second"}
    bad = 0
    for tag, col in columns.items():
        events = {e.step: e.value for e in acc.Scalars(tag)}
        for r in rows:
            want = np.float32(float(r[col]))
            got = events.get(int(r["epoch"]))
            if got is None or np.float32(got) != want:
                print(f"{tag} epoch {r['epoch']}: event {got}, metrics.csv {want}")
                bad += 1
    # The per-layer gradient norms: one finite, positive value per layer and epoch.
    norms = [t for t in tags if t.startswith("grad_norm/")]
    epochs = sorted(int(r["epoch"]) for r in rows)
    for tag in norms:
        events = acc.Scalars(tag)
        steps = sorted(e.step for e in events)
        if steps != epochs or not all(np.isfinite(e.value) and e.value > 0 for e in events):
            print(f"{tag}: steps {steps} (expected {epochs}), values {[e.value for e in events]}")
            bad += 1
    if not norms:
        print("no grad_norm/<layer> scalars")
        bad += 1
    if bad:
        sys.exit(f"{bad} mismatches")
    print(f"all {len(columns)} scalars of {len(rows)} epochs match metrics.csv; "
          f"{len(norms)} layers' gradient norms, one per epoch")


if __name__ == "__main__":
    main()

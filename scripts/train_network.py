"""Rule train_network: train (or resume) one network, then write the trained.json marker.

A stop signal (SLURM's USR1 before the time limit, TERM at the limit or on pre-emption) makes
training checkpoint and raise TrainingInterrupted; the job then exits with its exit_code (75)
and no marker, so Snakemake resubmits it (``retries``) and the next attempt resumes.
"""
import json
import logging
import sys
from pathlib import Path

from lemmse.data import load_split
from lemmse.rules import device, start
from lemmse.store import atomic_write_text
from lemmse.training.config import TrainConfig
from lemmse.training.loop import TrainingInterrupted, train

job = start(snakemake)  # noqa: F821 - injected by Snakemake
config = TrainConfig(**job["config"])
images = load_split(snakemake.input.data, "train", count=job["train_size"])  # noqa: F821
run_dir = Path(snakemake.output[0]).parent  # noqa: F821
try:
    result = train(run_dir, config, images, device=device(), resume=True)
except TrainingInterrupted as stopped:
    logging.getLogger("lemmse.rules").warning("%s; exiting with status %d so the job is retried",
                                              stopped, stopped.exit_code)
    sys.exit(stopped.exit_code)
atomic_write_text(snakemake.output[0], json.dumps({"steps": config.steps, "run_dir": str(run_dir)}) + "\n")  # noqa: F821

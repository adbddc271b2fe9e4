"""Rule train_network: train (or resume) one network, then write the trained.json marker."""
import json
from pathlib import Path

from lemmse.data import load_split
from lemmse.rules import device, start
from lemmse.sweep import training_config
from lemmse.training.loop import train

plan = start(snakemake)  # noqa: F821 - injected by Snakemake
run = plan.network_from_wildcards(snakemake.wildcards)  # noqa: F821
config = training_config(plan.config, run)
images = load_split(snakemake.input.data, "train", count=run.train_size)  # noqa: F821
run_dir = Path(snakemake.output[0]).parent  # noqa: F821
result = train(run_dir, config, images, device=device(), resume=True)
Path(snakemake.output[0]).write_text(json.dumps({"steps": config.steps, "run_dir": str(run_dir)}) + "\n")  # noqa: F821

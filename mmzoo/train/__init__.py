"""Training: recipes run on ``transformers.Trainer`` (DDP / FSDP / DeepSpeed via torchrun or accelerate)."""

from .dry_run import DryRunReport, dry_run
from .run import TrainResult, train
from .trainer import MmzooTrainer

__all__ = ["DryRunReport", "MmzooTrainer", "TrainResult", "dry_run", "train"]

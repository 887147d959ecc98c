"""LoRA training over a task stream: the LightningModule, per-task optimizer policies, adapter checkpoints."""

from circuitft.models.checkpoint import model_from_checkpoint
from circuitft.training.module import LoRAModule

__all__ = ["LoRAModule", "model_from_checkpoint"]

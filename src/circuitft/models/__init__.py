"""Model specs -> Hugging Face model + tokenizer (offline), and the analysis form (merged copy / bridge)."""

from circuitft.models.bridge import BridgeHooks, bridge_hooks, to_bridge
from circuitft.models.loading import LoadedModel, cache_dir, load_model, load_tokenizer, model_specs
from circuitft.models.merge import merged_copy

__all__ = [
    "BridgeHooks",
    "LoadedModel",
    "bridge_hooks",
    "cache_dir",
    "load_model",
    "load_tokenizer",
    "merged_copy",
    "model_specs",
    "to_bridge",
]

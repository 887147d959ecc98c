"""Model specs -> Hugging Face model + tokenizer (offline), and the analysis form (merged copy / bridge)."""

from circuitft.models.loading import LoadedModel, cache_dir, load_model, load_tokenizer, model_specs

__all__ = ["LoadedModel", "cache_dir", "load_model", "load_tokenizer", "model_specs"]

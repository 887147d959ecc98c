"""circuitft: sequential LoRA fine-tuning with EAP-IG circuit discovery at every checkpoint."""

__version__ = "0.1.0"

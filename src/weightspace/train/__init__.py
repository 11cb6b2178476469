"""Training: deterministic, resumable fine-tuning, and the outcomes of fine-tuning from fused
starts."""

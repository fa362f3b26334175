"""Fine-tuning: Wikipedia PT -> instruction data -> QLoRA/LoRA (peft + trl) -> merge -> GGUF -> re-quantize."""

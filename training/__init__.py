"""Self-supervised pre-training (distillation with contrast) and evaluation. Imports pcdviz, never the reverse."""

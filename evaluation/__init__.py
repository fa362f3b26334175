"""Evaluation: the human arena (votes and ratings) and, later, the base × fine-tune × RAG study."""

"""Prompts shared by every variant, so base, fine-tuned and RAG differ only where they must."""
from __future__ import annotations

DEFAULT_SYSTEM_PROMPT = (
    "Você é um assistente prestativo que responde sempre em português do Brasil, "
    "de forma correta, clara e concisa. Se não souber a resposta, diga que não sabe."
)


def build_messages(
    question: str,
    history: list[dict] | None = None,
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
) -> list[dict]:
    """Chat messages in OpenAI format: optional system prompt, prior turns, then the question."""
    messages: list[dict] = []
    if system_prompt:
        messages.append({"role": "system", "content": system_prompt})
    for turn in history or []:
        if turn.get("role") in ("user", "assistant") and turn.get("content"):
            messages.append({"role": turn["role"], "content": str(turn["content"])})
    messages.append({"role": "user", "content": question})
    return messages

"""Structured output task: a pt-BR user message -> {"intent": …, "entities": {…}} as JSON.

Each quantization answers the same messages twice — free generation (the model must follow the format
from the instructions) and schema-constrained generation (llama.cpp grammar from the JSON schema via
`response_format={"type": "json_object", "schema": …}`) — and is scored on valid-JSON rate, schema-valid
rate, intent accuracy and entity F1 (micro, over normalized (key, value) pairs).
"""
from __future__ import annotations

import json
import re
import time
import unicodedata
from pathlib import Path

from models.errors import ProjectError
from models.settings import REPO_ROOT

INTENTS_DIR = REPO_ROOT / "data" / "intents"
INTENTS_FILE = INTENTS_DIR / "intents.jsonl"
SCHEMA_FILE = INTENTS_DIR / "schema.json"

# Which entity keys each intent may carry (the schema lists their union; the dataset test checks this map).
ENTITIES_BY_INTENT = {
    "previsao_tempo": ["cidade", "data"],
    "reservar_restaurante": ["restaurante", "pessoas", "data", "horario"],
    "tocar_musica": ["musica", "artista", "genero"],
    "definir_alarme": ["horario", "data", "rotulo"],
    "converter_moeda": ["valor", "moeda_origem", "moeda_destino"],
    "pedir_taxi": ["origem", "destino", "horario"],
    "consultar_saldo": ["conta"],
    "traduzir": ["texto", "idioma_destino"],
    "agendar_consulta": ["especialidade", "data", "horario"],
    "outro": [],
}

SYSTEM_PROMPT = """Você é o classificador de um assistente virtual. Para cada mensagem do usuário, responda \
somente com um objeto JSON no formato {{"intent": "...", "entities": {{...}}}}, sem texto antes ou depois.

Intenções possíveis e suas entidades:
{catalog}

Regras: use exatamente um dos nomes de intenção acima; inclua em "entities" só as entidades que aparecem na \
mensagem, copiando o trecho exato da mensagem como valor (texto); se nada se encaixar, use "outro" com \
"entities": {{}}.

Exemplos:
Mensagem: Vai nevar em Bariloche na terça?
{{"intent": "previsao_tempo", "entities": {{"cidade": "Bariloche", "data": "terça"}}}}
Mensagem: Qual é o seu nome?
{{"intent": "outro", "entities": {{}}}}"""


def load_schema(path: Path = SCHEMA_FILE) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ProjectError(f"não consegui ler o schema de intenções {path}: {exc}") from exc


def load_intents(limit: int | None = None, path: Path = INTENTS_FILE) -> list[dict]:
    """The dataset; with `limit`, a deterministic round-robin over intents so every intent is represented."""
    try:
        rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError) as exc:
        raise ProjectError(f"não consegui ler o conjunto de intenções {path}: {exc}") from exc
    if limit is None or limit >= len(rows):
        return rows
    by_intent: dict[str, list[dict]] = {}
    for row in rows:
        by_intent.setdefault(row["intent"], []).append(row)
    out, i = [], 0
    while len(out) < limit:
        for items in by_intent.values():
            if i < len(items) and len(out) < limit:
                out.append(items[i])
        i += 1
    return out


def system_prompt() -> str:
    catalog = "\n".join(f"- {intent}: {', '.join(keys) if keys else '(sem entidades)'}"
                        for intent, keys in ENTITIES_BY_INTENT.items())
    return SYSTEM_PROMPT.format(catalog=catalog)


def parse_json(text: str):
    """The JSON object in a model answer, or None. Tolerates a ```json fence around it, nothing else."""
    body = text.strip()
    fence = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", body, flags=re.S)
    if fence:
        body = fence.group(1)
    try:
        value = json.loads(body)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def normalize(value) -> str:
    text = unicodedata.normalize("NFKD", str(value)).encode("ascii", "ignore").decode().lower()
    text = re.sub(r"[^\w\s]", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def entity_pairs(entities) -> set[tuple[str, str]]:
    if not isinstance(entities, dict):
        return set()
    return {(str(k), normalize(v)) for k, v in entities.items() if normalize(v)}


def score(examples: list[dict], answers: list[str], schema: dict) -> dict:
    """Valid JSON, schema-valid, intent accuracy and entity P/R/F1 over the examples."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema)
    n = len(examples)
    valid = schema_ok = correct = tp = n_pred = n_gold = 0
    for ex, answer in zip(examples, answers):
        obj = parse_json(answer)
        gold = entity_pairs(ex["entities"])
        n_gold += len(gold)
        if obj is None:
            continue
        valid += 1
        if validator.is_valid(obj):
            schema_ok += 1
        if obj.get("intent") == ex["intent"]:
            correct += 1
        pred = entity_pairs(obj.get("entities"))
        n_pred += len(pred)
        tp += len(pred & gold)
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"n": n, "valid_json": valid / n if n else 0.0, "schema_valid": schema_ok / n if n else 0.0,
            "intent_accuracy": correct / n if n else 0.0, "entity_precision": precision, "entity_recall": recall,
            "entity_f1": f1}


def run_intents(llm, examples: list[dict], schema: dict, constrained: bool, max_tokens: int = 96, seed: int = 42,
                on_step=None) -> dict:
    """Ask `llm` (a llama_cpp.Llama) for every example; returns scores, answers and timing.

    The system prompt is identical for every call, so llama-cpp-python reuses its KV cache prefix and
    each call only processes the user message.
    """
    system = system_prompt()
    kwargs = {"response_format": {"type": "json_object", "schema": schema}} if constrained else {}
    answers, start = [], time.perf_counter()
    for i, ex in enumerate(examples):
        out = llm.create_chat_completion(messages=[{"role": "system", "content": system},
                                                   {"role": "user", "content": ex["text"]}],
                                         temperature=0.0, max_tokens=max_tokens, seed=seed, **kwargs)
        answers.append(out["choices"][0]["message"]["content"] or "")
        if on_step:
            on_step(i + 1, len(examples))
    seconds = time.perf_counter() - start
    result = score(examples, answers, schema)
    result.update({"mode": "constrained" if constrained else "free", "seconds": round(seconds, 1),
                   "answers": answers})
    return result

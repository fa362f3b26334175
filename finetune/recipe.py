"""A recipe = one YAML file of plain settings (torchtune style); unknown keys are an error, not ignored."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

from models.errors import ProjectError
from models.settings import REPO_ROOT


@dataclass
class Recipe:
    name: str
    base_model: str
    data: str = "data/instructions/ptwiki.jsonl"
    corpus: str = "data/wiki_pt"
    qa_dir: str = "data/qa"
    output_dir: str = "runs/finetune"
    quantization: str = "auto"  # auto | nf4 | none
    precision: str = "auto"  # auto | fp32 | bf16 — compute dtype (mixed precision); auto = bf16 on CUDA, fp32 on CPU
    token_metrics: bool = False  # trl's per-token entropy and top-1 accuracy in the log (slower: a full softmax per step)
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    learning_rate: float = 2e-4
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.05
    epochs: float = 1
    max_steps: int = -1
    batch_size: int = 4
    gradient_accumulation: int = 1
    max_length: int = 256
    save_steps: int = 50
    logging_steps: int = 5
    seed: int = 42
    export_quant: list[str] = field(default_factory=lambda: ["Q4_K_M"])
    system_prompt: str | None = None  # None = the project's default pt-BR system prompt

    def path(self, key: str) -> Path:
        p = Path(getattr(self, key))
        return p if p.is_absolute() else REPO_ROOT / p

    @property
    def out(self) -> Path:
        return self.path("output_dir")

    def to_dict(self) -> dict:
        return asdict(self)


def load_recipe(path: str | Path, overrides: dict | None = None) -> Recipe:
    path = Path(path)
    if not path.exists():
        raise ProjectError(f"configuração não encontrada: {path}", hint="veja finetune/configs/")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ProjectError(f"YAML inválido em {path}: {exc}".splitlines()[0])
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    known = {f.name for f in fields(Recipe)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ProjectError(f"chave(s) desconhecida(s) em {path.name}: {', '.join(unknown)}",
                           hint=f"chaves válidas: {', '.join(sorted(known))}")
    for required in ("name", "base_model"):
        if not raw.get(required):
            raise ProjectError(f"a configuração {path.name} precisa de '{required}'")
    if raw.get("quantization", "auto") not in ("auto", "nf4", "none"):
        raise ProjectError(f"quantization deve ser auto, nf4 ou none (veio {raw['quantization']!r})")
    if raw.get("precision", "auto") not in ("auto", "fp32", "bf16"):
        raise ProjectError(f"precision deve ser auto, fp32 ou bf16 (veio {raw['precision']!r})")
    return Recipe(**raw)

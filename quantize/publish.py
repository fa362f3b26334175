"""An evaluation folder -> a Hugging Face model folder (GGUF files + model card), uploaded only with --push.

The card carries the YAML metadata the Hub reads (base_model, license, language, tags, quantization types),
the measured table from results.json, the reference caveat and how to run the files with llama-cpp-python.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from models.errors import ProjectError

# Upstream checkpoints of the registry's models (the GGUFs themselves do not all record it).
BASE_MODELS = {
    "qwen2.5-0.5b-instruct": "Qwen/Qwen2.5-Coder-0.5B-Instruct",
    "qwen2.5-1.5b-instruct": "Qwen/Qwen2.5-Coder-1.5B-Instruct",
    "smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "llama-2-7b-chat": "meta-llama/Llama-2-7b-chat-hf",
    "llama-2-13b-chat": "meta-llama/Llama-2-13b-chat-hf",
}
LICENSE_IDS = {"apache-2.0": "apache-2.0", "mit": "mit", "llama 2": "llama2"}
_REPO = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


def _license_id(text: str | None) -> str:
    low = (text or "").lower()
    for key, value in LICENSE_IDS.items():
        if key in low:
            return value
    return "other"


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hard link when possible (GGUFs are large), else copy; atomic either way."""
    if dst.exists() and dst.stat().st_size == src.stat().st_size:
        return
    tmp = dst.with_name(dst.name + ".partial")
    tmp.unlink(missing_ok=True)
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def model_card(results: dict, repo: str, files: list[dict], base_model: str | None, license_id: str) -> str:
    from .report import hardware_line, markdown

    types = [f["type"] for f in files]
    tags = ["gguf", "quantized", "llama-cpp", "portuguese"] + sorted({t.lower() for t in types})
    yaml = ["---"]
    if base_model:
        yaml += [f"base_model: {base_model}", "base_model_relation: quantized"]
    yaml += [f"license: {license_id}", "language:", "- pt", "library_name: gguf", "pipeline_tag: text-generation",
             "tags:"] + [f"- {t}" for t in tags] + ["quantization:"] + [f"- {t}" for t in types] + ["---", ""]
    name = repo.split("/", 1)[1]
    default = next((f for f in files if f["type"] == "Q4_K_M"), files[0])
    body = [f"# {name}", "",
            f"GGUF quantizations of `{base_model or results['model']}` for [llama.cpp](https://github.com/ggml-org/llama.cpp), "
            "measured in Portuguese (perplexity and KL divergence on held-out pt-BR text, a JSON intent task, speed and memory).",
            "", "## Files", "", "| file | type | size (MB) | bits/weight | PPL / ref | KLD |", "|---|---|---:|---:|---:|---:|"]
    for f in files:
        body.append(f"| `{f['name']}` | {f['type']} | {f['size'] / 1e6:,.0f} | {f['bpw']:.2f} | {f['ppl_ratio']} | {f['kld']} |")
    body += ["", "## How to run (llama-cpp-python)", "", "```python", "from llama_cpp import Llama", "",
             f'llm = Llama.from_pretrained(repo_id="{repo}", filename="{default["name"]}", n_ctx=4096)',
             'out = llm.create_chat_completion(messages=[{"role": "user", "content": "Qual é a capital de Portugal?"}])',
             'print(out["choices"][0]["message"]["content"])', "```", "",
             "Or download one file and load it locally:", "", "```bash",
             f"huggingface-cli download {repo} {default['name']} --local-dir .",
             f"python -c \"from llama_cpp import Llama; print(Llama('{default['name']}')('Olá,', max_tokens=16))\"", "```", "",
             "## Evaluation", "", f"Measured on: {hardware_line(results['hardware'])}.", ""]
    report = markdown(results).split("\n", 2)[2]  # drop the report's own title
    body.append(report)
    return "\n".join(yaml + body) + "\n"


def build_folder(eval_dir: str | os.PathLike, repo: str, out: str | os.PathLike | None = None, types: list[str] | None = None,
                 base_model: str | None = None, license_id: str | None = None) -> dict:
    """Assemble the upload folder; returns its path and the files it holds."""
    from models.registry import all_models

    eval_dir = Path(eval_dir)
    if not _REPO.match(repo or ""):
        raise ProjectError(f"--repo inválido: '{repo}'", hint="use usuario/nome-do-modelo")
    res_path = eval_dir / "results.json"
    if not res_path.exists():
        raise ProjectError(f"{eval_dir} não tem results.json", hint="rode antes `python -m quantize evaluate --out PASTA`")
    results = json.loads(res_path.read_text(encoding="utf-8"))
    spec = all_models().get(results["model"])
    base_model = base_model or BASE_MODELS.get(results["model"]) or (spec.base_model if spec else None)
    license_id = license_id or _license_id(spec.license if spec else results.get("model_license"))
    wanted = {t.upper() for t in types} if types else None
    folder = Path(out) if out else eval_dir / "hf" / repo.replace("/", "__")
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    stem = results["model"].replace("/", "_")
    for r in results["variants"]:
        if "error" in r or (wanted and r["type"].upper() not in wanted):
            continue
        src = Path(r["file"]["path"])
        if not src.exists():
            raise ProjectError(f"o arquivo medido não existe mais: {src}", hint="rode o evaluate de novo")
        suffix = "-original" if r.get("native") else ("-imatrix" if "+imatrix" in r["label"] else "")
        name = f"{stem}-{r['type'].lower()}{suffix}.gguf"
        _link_or_copy(src, folder / name)
        p = r.get("ppl") or {}
        files.append({"name": name, "type": r["type"], "size": r["file"]["size"], "bpw": r["file"]["bits_per_weight"],
                      "ppl_ratio": "1 (ref.)" if r["role"] == "reference" else (f"{p['ppl_ratio']:.4f}" if "ppl_ratio" in p else "—"),
                      "kld": "0 (ref.)" if r["role"] == "reference" else (f"{p['kld']:.5f}" if "kld" in p else "—")})
    if not files:
        raise ProjectError("nenhum arquivo para publicar com esses tipos", hint=f"tipos medidos: {', '.join(r['type'] for r in results['variants'])}")
    card = model_card(results, repo, files, base_model, license_id)
    tmp = folder / "README.md.partial"
    tmp.write_text(card, encoding="utf-8")
    os.replace(tmp, folder / "README.md")
    for png in results.get("plots", []):
        if (eval_dir / png).exists():
            shutil.copyfile(eval_dir / png, folder / png)
    return {"folder": str(folder), "repo": repo, "files": [f["name"] for f in files] + ["README.md"],
            "bytes": sum(f["size"] for f in files), "base_model": base_model, "license": license_id}


def push(folder: str | os.PathLike, repo: str, token: str | None = None, private: bool = False) -> str:
    """Upload with huggingface_hub; one-line errors for no token and no network."""
    try:
        from huggingface_hub import HfApi, get_token
    except ImportError as exc:  # pragma: no cover
        raise ProjectError("huggingface_hub não está instalado", hint="rode `make setup`") from exc
    token = token or os.environ.get("HF_TOKEN") or get_token()
    if not token:
        raise ProjectError("sem token do Hugging Face para enviar", hint="rode `huggingface-cli login` ou passe --token / HF_TOKEN")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        raise ProjectError("HF_HUB_OFFLINE está ativo: não há como enviar ao Hugging Face Hub", hint="desative-o com rede disponível")
    api = HfApi(token=token)
    try:
        api.create_repo(repo, repo_type="model", exist_ok=True, private=private)
        info = api.upload_folder(folder_path=str(folder), repo_id=repo, repo_type="model",
                                 commit_message="GGUF quantizations + evaluation (python -m quantize publish)")
    except Exception as exc:  # requests/httpx/hub errors: the message is what matters to the user
        name = type(exc).__name__
        if any(k in name for k in ("Connection", "Timeout", "Offline")) or "resolve" in str(exc).lower():
            raise ProjectError(f"sem conexão com o Hugging Face Hub ({name})", hint="tente de novo com rede; a pasta já está pronta") from exc
        raise ProjectError(f"o envio para {repo} falhou: {name}: {str(exc)[:200]}") from exc
    return str(getattr(info, "commit_url", info))


def publish(eval_dir, repo: str, push_to_hub: bool = False, token: str | None = None, **kwargs) -> dict:
    result = build_folder(eval_dir, repo, **kwargs)
    result["pushed"] = False
    if push_to_hub:
        result["url"] = push(result["folder"], repo, token)
        result["pushed"] = True
    return result

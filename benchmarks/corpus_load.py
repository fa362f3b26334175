"""Throughput and memory of the MediaWiki dump loader (rag.corpus.iter_articles) on a synthetic ptwiki dump.

Writes a `ptwiki-synthetic-pages-articles.xml.bz2` with N articles of realistic wikitext (infobox, refs,
links, tables, images, categories, back-matter sections) plus redirects, template pages and
disambiguation pages in between, streams it through `iter_articles`, and samples RSS along the way:
a flat RSS from 10k to N articles shows the loader runs in constant memory.

    python benchmarks/corpus_load.py [--n 100000] [--dump PATH] [--keep]
"""
from __future__ import annotations

import argparse
import bz2
import json
import os
import platform
import random
import resource
import sys
import tempfile
import time
from pathlib import Path
from xml.sax.saxutils import escape

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402

from rag.corpus import CorpusStats, iter_articles  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "corpus_load.json"
SAMPLE_EVERY = 1000

# Plain Portuguese words to build sentences from; the loader's cost depends on markup, not meaning.
WORDS = """a cidade região história população rio serra estado município país século governo economia cultura
língua povo igreja escola universidade ciência arte música literatura guerra paz comércio indústria agricultura
clima floresta costa ilha porto estrada ferrovia ponte praça museu teatro festa tradição família nome origem
período colonial império república independência constituição eleição partido presidente rei rainha capital
norte sul leste oeste centro interior litoral planalto vale montanha lago mar oceano chuva seca verão inverno
primavera outono espécie planta animal ave peixe árvore flor fruto semente solo pedra metal ouro prata ferro
grande pequeno antigo novo principal importante conhecido famoso primeiro segundo último maior menor alto baixo
foi é era são tem teve fica ficou recebeu passou começou terminou construiu fundou criou escreveu publicou
descobriu ocupou governou venceu perdeu ganhou chegou saiu voltou viveu morreu nasceu estudou trabalhou
durante depois antes entre sobre desde até com sem para por pela pelo nos nas dos das um uma outros outras
muito pouco mais menos também ainda já sempre nunca hoje ontem cedo tarde perto longe dentro fora""".split()
LINKED = ["Brasil", "Portugal", "Lisboa", "São Paulo", "Rio de Janeiro", "Minas Gerais", "Bahia", "Amazonas",
          "Oceano Atlântico", "América do Sul", "Império Português", "século XIX", "século XX", "Angola",
          "Moçambique", "Cabo Verde", "Porto", "Coimbra", "Recife", "Salvador", "Belém", "Manaus", "Curitiba"]
SECTIONS = ["História", "Geografia", "Economia", "Cultura", "Demografia", "Características", "Origem",
            "Descrição", "Legado", "Biografia", "Política", "Educação"]
BACK_MATTER = ["Ver também", "Referências", "Ligações externas", "Bibliografia", "Notas"]


def sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(8, 20))]
    for _ in range(rng.randint(0, 2)):  # links, some with labels
        target = rng.choice(LINKED)
        link = f"[[{target}|{rng.choice(WORDS)}]]" if rng.random() < 0.4 else f"[[{target}]]"
        words.insert(rng.randrange(len(words)), link)
    if rng.random() < 0.2:
        words.insert(rng.randrange(len(words)), f"''{rng.choice(WORDS)}''")
    text = " ".join(words)
    text = text[0].upper() + text[1:] + "."
    r = rng.random()
    if r < 0.2:
        text += f'<ref name="r{rng.randint(1, 5)}">{{{{citar web|url=https://exemplo.org/{rng.randint(1, 999)}' \
                f'|título={rng.choice(WORDS)}|acessodata=1 de janeiro de 2023}}}}</ref>'
    elif r < 0.3:
        text += f'<ref name="r{rng.randint(1, 5)}" />'
    return text


def paragraph(rng: random.Random) -> str:
    return " ".join(sentence(rng) for _ in range(rng.randint(2, 5)))


def article_wikitext(rng: random.Random, title: str) -> str:
    parts = [f"{{{{Info/Local\n| nome = {title}\n| país = [[Brasil]]\n| população = {rng.randint(1000, 900000)}\n"
             f"| área = {rng.randint(10, 9000)}\n}}}}",
             f"'''{title}''' é um {rng.choice(WORDS)} do [[{rng.choice(LINKED)}]]. {paragraph(rng)}"]
    if rng.random() < 0.5:
        parts.append(f"[[Ficheiro:{title.replace(' ', '_')}.jpg|thumb|{sentence(rng)}]]")
    for heading in rng.sample(SECTIONS, rng.randint(2, 4)):
        parts.append(f"== {heading} ==")
        parts.extend(paragraph(rng) for _ in range(rng.randint(1, 2)))
        if rng.random() < 0.25:
            rows = "\n".join(f"|-\n| {rng.choice(WORDS)} || {rng.randint(1, 9999)}" for _ in range(4))
            parts.append(f'{{| class="wikitable"\n! Item !! Valor\n{rows}\n|}}')
        if rng.random() < 0.25:
            parts.append("\n".join(f"* [[{rng.choice(LINKED)}]] {rng.choice(WORDS)}" for _ in range(3)))
    parts += ["== Referências ==", "{{Reflist}}", "== Ligações externas ==",
              f"* [https://exemplo.org/{rng.randint(1, 999)} Sítio oficial]", "{{Portal3|Brasil}}"]
    parts += [f"[[Categoria:{rng.choice(LINKED)}]]" for _ in range(rng.randint(1, 3))]
    return "\n\n".join(parts)


def page_xml(page_id: int, title: str, ns: int, text: str, redirect: str | None = None) -> str:
    redirect_tag = f'    <redirect title="{escape(redirect)}" />\n' if redirect else ""
    return (f"  <page>\n    <title>{escape(title)}</title>\n    <ns>{ns}</ns>\n    <id>{page_id}</id>\n"
            f"{redirect_tag}    <revision>\n      <id>{page_id * 10}</id>\n"
            f"      <timestamp>2023-11-01T00:00:00Z</timestamp>\n      <model>wikitext</model>\n"
            f"      <format>text/x-wiki</format>\n      <text bytes=\"{len(text.encode())}\" xml:space=\"preserve\">"
            f"{escape(text)}</text>\n    </revision>\n  </page>\n")


def write_dump(path: Path, n_articles: int, seed: int = 0) -> dict:
    """Stream a synthetic dump to `path` (never held in memory); returns page counts and sizes."""
    rng = random.Random(seed)
    counts = {"articles": 0, "redirects": 0, "other_ns": 0, "disambiguations": 0, "xml_bytes": 0}
    header = ('<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" version="0.10" xml:lang="pt">\n'
              "  <siteinfo>\n    <sitename>Wikipédia</sitename>\n    <dbname>ptwiki</dbname>\n"
              "    <base>https://pt.wikipedia.org/wiki/Wikip%C3%A9dia:P%C3%A1gina_principal</base>\n  </siteinfo>\n")
    page_id = 0
    with bz2.open(path, "wt", encoding="utf-8") as out:
        def emit(text: str) -> None:
            counts["xml_bytes"] += len(text.encode())
            out.write(text)

        emit(header)
        while counts["articles"] < n_articles:
            page_id += 1
            title = f"{rng.choice(LINKED)} {rng.choice(WORDS)} {page_id}"
            r = rng.random()
            if r < 0.03:  # about the share of non-article pages we let through in a pages-articles dump sample
                counts["redirects"] += 1
                emit(page_xml(page_id, title, 0, f"#REDIRECIONAMENTO [[{rng.choice(LINKED)}]]", rng.choice(LINKED)))
            elif r < 0.05:
                counts["other_ns"] += 1
                emit(page_xml(page_id, f"Predefinição:{title}", 10, "{{{1}}} {{#if:{{{2|}}}|x}}"))
            elif r < 0.06:
                counts["disambiguations"] += 1
                emit(page_xml(page_id, title, 0, f"'''{title}''' pode referir-se a:\n* [[{title} (a)]]\n"
                                                 f"* [[{title} (b)]]\n\n{{{{Desambiguação}}}}"))
            else:
                counts["articles"] += 1
                emit(page_xml(page_id, title, 0, article_wikitext(rng, title)))
        emit("</mediawiki>\n")
    counts["bz2_bytes"] = path.stat().st_size
    return counts


def hardware() -> dict:
    cpu = "?"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), "?")
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "os": f"{platform.system()} {platform.release()}", "python": platform.python_version()}


def measure_load(path: Path) -> dict:
    """Stream the dump through iter_articles, sampling RSS every SAMPLE_EVERY articles."""
    process = psutil.Process()
    stats = CorpusStats()
    samples = []
    start = time.perf_counter()
    for n, _ in enumerate(iter_articles(path, stats=stats), start=1):
        if n % SAMPLE_EVERY == 0:
            samples.append((n, process.memory_info().rss))
    elapsed = time.perf_counter() - start
    samples.append((stats.articles, process.memory_info().rss))
    return {"seconds": elapsed, "stats": stats, "samples": samples}


def rss_at(samples, n: int) -> float:
    """RSS in MiB at the first sample taken at or after `n` articles."""
    return next((rss for k, rss in samples if k >= n), samples[-1][1]) / 2**20


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Mede o carregamento de um dump ptwiki sintético (artigos/s e RSS).")
    parser.add_argument("--n", type=int, default=100_000, help="artigos no dump sintético (padrão: 100000)")
    parser.add_argument("--dump", type=Path, default=None, help="usa/gera o dump neste caminho em vez de um temporário")
    parser.add_argument("--keep", action="store_true", help="mantém o dump temporário no fim")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS, help="onde gravar o JSON de resultados")
    args = parser.parse_args(argv)

    tmpdir = None
    if args.dump is None:
        tmpdir = tempfile.mkdtemp(prefix="corpus_load_")
        dump = Path(tmpdir) / "ptwiki-synthetic-pages-articles.xml.bz2"
    else:
        dump = args.dump
    generated = None
    if not dump.exists():
        print(f"gerando {dump} com {args.n} artigos…", file=sys.stderr)
        t0 = time.perf_counter()
        generated = write_dump(dump, args.n, args.seed)
        generated["seconds"] = round(time.perf_counter() - t0, 1)
        print(f"gerado em {generated['seconds']} s ({generated['bz2_bytes'] / 2**20:.0f} MiB bz2)", file=sys.stderr)

    rss_before = psutil.Process().memory_info().rss
    print("lendo com rag.corpus.iter_articles…", file=sys.stderr)
    run = measure_load(dump)
    stats, samples = run["stats"], run["samples"]
    first_mark = min(10_000, stats.articles)
    result = {
        "articles": stats.articles,
        "skipped": dict(sorted(stats.skipped.items())),
        "words": stats.words,
        "truncated": stats.truncated,
        "dump": {"bz2_mib": round(dump.stat().st_size / 2**20, 1),
                 "xml_mib": round(generated["xml_bytes"] / 2**20, 1) if generated else None,
                 "generate_s": generated["seconds"] if generated else None},
        "load_s": round(run["seconds"], 1),
        "articles_per_s": round(stats.articles / run["seconds"], 1),
        "words_per_s": round(stats.words / run["seconds"]),
        "rss_mib": {"before_load": round(rss_before / 2**20, 1),
                    f"at_{first_mark}": round(rss_at(samples, first_mark), 1),
                    f"at_{stats.articles}": round(samples[-1][1] / 2**20, 1),
                    "max_sampled": round(max(rss for _, rss in samples) / 2**20, 1),
                    # ru_maxrss (KiB on Linux) also covers writing the dump, so it is an upper bound.
                    "peak_process": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)},
        "rss_mib_by_articles": {str(k): round(rss / 2**20, 1) for k, rss in samples[:: max(1, len(samples) // 20)]},
        "hardware": hardware(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")

    hw, rss = result["hardware"], result["rss_mib"]
    print(f"\nHardware: {hw['cpu']}, {hw['cores']} núcleos, {hw['memory_gb']} GiB, Python {hw['python']}\n")
    print("| artigos | dump .bz2 | tempo | artigos/s | palavras/s | RSS em "
          f"{first_mark:,} | RSS em {stats.articles:,} | RSS máx. amostrado |".replace(",", "."))
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {stats.articles} | {result['dump']['bz2_mib']} MiB | {result['load_s']} s | "
          f"{result['articles_per_s']} | {result['words_per_s']} | {rss[f'at_{first_mark}']} MiB | "
          f"{rss[f'at_{stats.articles}']} MiB | {rss['max_sampled']} MiB |")
    print(f"\nresultados em {args.out}")
    if tmpdir and not args.keep:
        dump.unlink(missing_ok=True)
        os.rmdir(tmpdir)
    elif tmpdir:
        print(f"dump mantido em {dump}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The Wikipedia loaders: every format yields the same articles; bad input fails with a clear ProjectError.

Six short pt-BR articles exist here twice: as realistic wikitext (for the MediaWiki dump) and as the clean
text every loader must produce. The same articles are then written as parquet shards, JSONL, wikiextractor
JSONL and a ptwiki-…-pages-articles.xml.bz2 with a redirect, a template page and a disambiguation page.
"""
from __future__ import annotations

import bz2
import gzip
import json
import subprocess
import sys
from pathlib import Path
from xml.sax.saxutils import escape

import pytest

from models.errors import ProjectError
from rag.checks import check_corpus, normalize_question
from rag.corpus import CorpusStats, CorpusWarning, corpus_summary, iter_articles, load_articles
from rag.wikitext import wikitext_to_text
from tests.conftest import ROOT, run_module

# ------------------------------------------------------------------------------------------------- fixtures

ARTICLES = [
    {
        "id": "101", "title": "Rio Amazonas",
        "wikitext": """{{Info/Rio
| nome        = Rio Amazonas
| comprimento = 6992
| foz         = [[Oceano Atlântico]]
}}
O '''rio Amazonas''' é o maior rio da [[América do Sul]] em volume de água.<ref name="ana">{{citar web |url=https://www.gov.br/ana |título=Agência Nacional de Águas |acessodata=1 de março de 2023}}</ref> Nasce nos [[Cordilheira dos Andes|Andes peruanos]] e deságua no [[Oceano Atlântico|Atlântico]], no norte do [[Brasil]].<ref name="ana" />
[[Ficheiro:Amazon River.jpg|thumb|direita|250px|O rio visto do alto, perto de [[Manaus]]]]

Sua bacia hidrográfica cobre cerca de sete milhões de quilômetros quadrados e reúne milhares de afluentes.

== Curso ==
Ao entrar no Brasil, o rio é chamado de '''Solimões''' até o encontro com o [[rio Negro]], perto de [[Manaus]].<ref>Texto de apoio sem nome.</ref>
{| class="wikitable"
! Trecho !! Nome
|-
| Do Peru a Manaus || Solimões
|-
| De Manaus ao mar || Amazonas
|}
Dali em diante recebe o nome de ''Amazonas''.

== Biodiversidade ==
A floresta ao redor abriga milhares de espécies de peixes, como o [[pirarucu]] e o [[Boto-cor-de-rosa|boto]].

== Referências ==
{{Reflist}}

== Ligações externas ==
* [https://www.gov.br/ana Agência Nacional de Águas]

{{Portal3|Geografia|Brasil}}
[[Categoria:Rios do Brasil]]
[[Categoria:Rios do Peru]]
""",
        "text": "O rio Amazonas é o maior rio da América do Sul em volume de água. Nasce nos Andes peruanos e deságua "
                "no Atlântico, no norte do Brasil.\n\n"
                "Sua bacia hidrográfica cobre cerca de sete milhões de quilômetros quadrados e reúne milhares de "
                "afluentes.\n\n"
                "Curso\n\n"
                "Ao entrar no Brasil, o rio é chamado de Solimões até o encontro com o rio Negro, perto de Manaus.\n\n"
                "Dali em diante recebe o nome de Amazonas.\n\n"
                "Biodiversidade\n\n"
                "A floresta ao redor abriga milhares de espécies de peixes, como o pirarucu e o boto.",
    },
    {
        "id": "102", "title": "Fotossíntese",
        "wikitext": """A '''fotossíntese''' é o processo pelo qual [[planta]]s, [[alga]]s e algumas [[bactéria]]s transformam [[luz]] em energia química.<ref name=":0">{{Citar livro|título=Biologia|ano=2015}}</ref> Ela consome CO<sub>2</sub> e água e libera [[oxigênio]].

== Etapas ==
O processo ocorre nos [[cloroplasto]]s e se divide em duas fases.<ref name=":0"/>

=== Fase clara ===
Depende diretamente da luz e acontece nas membranas dos tilacoides. Nela:
* a água é quebrada e libera [[oxigênio]];
* forma-se [[Trifosfato de adenosina|ATP]].

=== Fase escura ===
Também chamada de ''ciclo de Calvin'', usa o ATP para fixar o [[dióxido de carbono]].

== Importância ==
Quase toda a cadeia alimentar depende da fotossíntese, que também renova o oxigênio do ar.

== Ver também ==
* [[Respiração celular]]
* [[Clorofila]]

== Referências ==
<references />
""",
        "text": "A fotossíntese é o processo pelo qual plantas, algas e algumas bactérias transformam luz em energia "
                "química. Ela consome CO2 e água e libera oxigênio.\n\n"
                "Etapas\n\n"
                "O processo ocorre nos cloroplastos e se divide em duas fases.\n\n"
                "Fase clara\n\n"
                "Depende diretamente da luz e acontece nas membranas dos tilacoides. Nela:\n"
                "a água é quebrada e libera oxigênio;\n"
                "forma-se ATP.\n\n"
                "Fase escura\n\n"
                "Também chamada de ciclo de Calvin, usa o ATP para fixar o dióxido de carbono.\n\n"
                "Importância\n\n"
                "Quase toda a cadeia alimentar depende da fotossíntese, que também renova o oxigênio do ar.",
    },
    {
        "id": "103", "title": "Machado de Assis",
        "wikitext": """{{Info/Escritor
|nome            = Machado de Assis
|imagem          = Machado de Assis 1904.jpg
|nascimento_data = {{dni|21|6|1839}}
}}
'''Joaquim Maria Machado de Assis''' ([[Rio de Janeiro]], [[21 de junho]] de [[1839]] — Rio de Janeiro, [[29 de setembro]] de [[1908]]) foi um escritor brasileiro, considerado por muitos críticos o maior nome da [[literatura do Brasil|literatura brasileira]].<ref>{{citar livro|autor=Fulano|título=História da literatura}}</ref>

== Biografia ==
Nasceu no [[Morro do Livramento]], filho de um pintor de paredes e de uma lavadeira. Trabalhou como tipógrafo e revisor antes de se tornar cronista.

Em [[1897]] foi um dos fundadores da [[Academia Brasileira de Letras]], que presidiu até a morte.{{Nota de rodapé|Foi o primeiro presidente da instituição.}}

== Obras ==
Entre os romances mais conhecidos estão:
* ''[[Memórias Póstumas de Brás Cubas]]'' (1881)
* ''[[Quincas Borba]]'' (1891)
* '''''[[Dom Casmurro]]''''' (1899)

== Notas ==
{{notas}}

[[Categoria:Escritores do Brasil]]
""",
        "text": "Joaquim Maria Machado de Assis (Rio de Janeiro, 21 de junho de 1839 — Rio de Janeiro, 29 de setembro "
                "de 1908) foi um escritor brasileiro, considerado por muitos críticos o maior nome da literatura "
                "brasileira.\n\n"
                "Biografia\n\n"
                "Nasceu no Morro do Livramento, filho de um pintor de paredes e de uma lavadeira. Trabalhou como "
                "tipógrafo e revisor antes de se tornar cronista.\n\n"
                "Em 1897 foi um dos fundadores da Academia Brasileira de Letras, que presidiu até a morte.\n\n"
                "Obras\n\n"
                "Entre os romances mais conhecidos estão:\n"
                "Memórias Póstumas de Brás Cubas (1881)\n"
                "Quincas Borba (1891)\n"
                "Dom Casmurro (1899)",
    },
    {
        "id": "104", "title": "Cerrado",
        "wikitext": """{{Info/Bioma}}
O '''Cerrado''' é o segundo maior [[bioma]] do [[Brasil]], depois da [[Amazônia]].<ref name="ibge">IBGE, 2019.</ref> Ocupa boa parte do [[Planalto Central]] e é conhecido em inglês como {{lang|en|''Brazilian savanna''}}.
[[Arquivo:Cerrado vegetation.jpg|miniaturadaimagem|Vegetação típica]]
[[Imagem:Ipê.jpg|thumb]]

== Clima ==
<!-- revisar números -->O clima é tropical, com uma estação seca bem marcada entre maio e setembro.<ref name="ibge" /> As chuvas se concentram no verão.

== Vegetação ==
As árvores têm troncos tortuosos e cascas grossas, uma adaptação ao [[Incêndio florestal|fogo]] frequente.&nbsp;Muitas espécies rebrotam logo após as queimadas {{carece de fontes|data=maio de 2021}}.

{| class="wikitable sortable"
|+ Fitofisionomias
! Tipo !! Descrição
|-
| Campo limpo || Quase só gramíneas
|}

== Bibliografia ==
* Fulano. ''Cerrado''. 2010.

[[Categoria:Biomas do Brasil]]
""",
        "text": "O Cerrado é o segundo maior bioma do Brasil, depois da Amazônia. Ocupa boa parte do Planalto Central "
                "e é conhecido em inglês como Brazilian savanna.\n\n"
                "Clima\n\n"
                "O clima é tropical, com uma estação seca bem marcada entre maio e setembro. As chuvas se concentram "
                "no verão.\n\n"
                "Vegetação\n\n"
                "As árvores têm troncos tortuosos e cascas grossas, uma adaptação ao fogo frequente. Muitas espécies "
                "rebrotam logo após as queimadas.",
    },
    {
        "id": "105", "title": "Samba",
        "wikitext": """O '''samba''' é um gênero musical brasileiro de origem afro-brasileira, reconhecido como [[Patrimônio Cultural Imaterial|patrimônio cultural]] do país.<ref>{{Citar web|url=http://portal.iphan.gov.br|título=IPHAN}}</ref>

== Origens ==
{{Artigo principal|História do samba}}
O ritmo se formou no [[Rio de Janeiro]] no início do [[século XX]], a partir de tradições trazidas da [[Bahia]]. A canção ''[[Pelo Telefone]]'', registrada em 1916, costuma ser citada como o primeiro samba gravado.

== Escolas de samba ==
As [[escola de samba|escolas de samba]] desfilam no [[Carnaval do Brasil|Carnaval]]; há mais informações no [https://www.gov.br/turismo site do Ministério do Turismo].

== Ver também ==
* [[Bossa nova]]
* [[Pagode]]

== Referências ==
{{Referências}}
""",
        "text": "O samba é um gênero musical brasileiro de origem afro-brasileira, reconhecido como patrimônio cultural "
                "do país.\n\n"
                "Origens\n\n"
                "O ritmo se formou no Rio de Janeiro no início do século XX, a partir de tradições trazidas da Bahia. "
                "A canção Pelo Telefone, registrada em 1916, costuma ser citada como o primeiro samba gravado.\n\n"
                "Escolas de samba\n\n"
                "As escolas de samba desfilam no Carnaval; há mais informações no site do Ministério do Turismo.",
    },
    {
        "id": "106", "title": "Ipê-amarelo",
        "wikitext": """{{Info/Taxonomia
| nome  = Ipê-amarelo
| reino = [[Plantae]]
}}
O '''ipê-amarelo''' (''Handroanthus albus'') é uma árvore nativa do Brasil, famosa pelas flores amarelas que cobrem a copa no fim do inverno.

== Usos ==
A madeira é densa e resistente, usada em construções e móveis. A árvore também é plantada em praças e avenidas.<ref name="lorenzi">{{citar livro|autor=Lorenzi|título=Árvores brasileiras}}</ref>

== Símbolo ==
É lembrado com frequência como um símbolo da flora brasileira.<ref name="lorenzi" />

== Referências ==
{{reflist}}

[[Categoria:Bignoniaceae]]
[[Categoria:Árvores do Brasil]]
""",
        "text": "O ipê-amarelo (Handroanthus albus) é uma árvore nativa do Brasil, famosa pelas flores amarelas que "
                "cobrem a copa no fim do inverno.\n\n"
                "Usos\n\n"
                "A madeira é densa e resistente, usada em construções e móveis. A árvore também é plantada em praças "
                "e avenidas.\n\n"
                "Símbolo\n\n"
                "É lembrado com frequência como um símbolo da flora brasileira.",
    },
]
for _a in ARTICLES:
    _a["url"] = "https://pt.wikipedia.org/wiki/" + _a["title"].replace(" ", "_")
EXPECTED = [{k: a[k] for k in ("id", "url", "title", "text")} for a in ARTICLES]

# Pages the dump loader must skip, placed between the articles.
REDIRECT = {"id": "201", "title": "Amazonas (rio)", "ns": 0, "redirect": "Rio Amazonas",
            "wikitext": "#REDIRECIONAMENTO [[Rio Amazonas]]\n\n{{Redirecionamento de título alternativo}}"}
TEMPLATE = {"id": "202", "title": "Predefinição:Info/Rio", "ns": 10,
            "wikitext": "{| class=\"infobox\"\n! {{{nome}}}\n|-\n| Comprimento: {{{comprimento}}} km\n|}"}
DISAMBIGUATION = {"id": "203", "title": "Mercúrio", "ns": 0,
                  "wikitext": "'''Mercúrio''' pode referir-se a:\n* [[Mercúrio (planeta)]]\n"
                              "* [[Mercúrio (elemento químico)]]\n\n{{Desambiguação}}"}

SITEINFO = """<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" \
xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" version="0.10" xml:lang="pt">
  <siteinfo>
    <sitename>Wikipédia</sitename>
    <dbname>ptwiki</dbname>
    <base>https://pt.wikipedia.org/wiki/Wikip%C3%A9dia:P%C3%A1gina_principal</base>
    <generator>MediaWiki 1.42.0-wmf.2</generator>
    <case>first-letter</case>
    <namespaces>
      <namespace key="0" case="first-letter" />
      <namespace key="10" case="first-letter">Predefinição</namespace>
      <namespace key="14" case="first-letter">Categoria</namespace>
    </namespaces>
  </siteinfo>
"""


def page_xml(page: dict) -> str:
    redirect = f'    <redirect title="{escape(page["redirect"])}" />\n' if page.get("redirect") else ""
    text = page["wikitext"]
    return (f"  <page>\n    <title>{escape(page['title'])}</title>\n    <ns>{page.get('ns', 0)}</ns>\n"
            f"    <id>{page['id']}</id>\n{redirect}    <revision>\n      <id>6{page['id']}000</id>\n"
            f"      <timestamp>2023-11-01T00:00:00Z</timestamp>\n"
            f"      <contributor>\n        <username>Exemplo</username>\n        <id>42</id>\n      </contributor>\n"
            f"      <model>wikitext</model>\n      <format>text/x-wiki</format>\n"
            f"      <text bytes=\"{len(text.encode())}\" xml:space=\"preserve\">{escape(text)}</text>\n"
            f"      <sha1>0000000000000000000000000000000</sha1>\n    </revision>\n  </page>\n")


def dump_pages() -> list[dict]:
    """Articles in order, with the pages to skip in between; the last page is an article."""
    a = ARTICLES
    return [a[0], REDIRECT, a[1], TEMPLATE, a[2], DISAMBIGUATION, a[3], a[4], a[5]]


def write_dump_bz2(path: Path) -> list[int]:
    """A multistream dump (like ptwiki-…-pages-articles-multistream.xml.bz2): one bz2 stream per page.

    Returns the byte offset where each page's stream starts, so tests can cut the file inside a page.
    """
    offsets = []
    with open(path, "wb") as fh:
        fh.write(bz2.compress(SITEINFO.encode()))
        for page in dump_pages():
            offsets.append(fh.tell())
            fh.write(bz2.compress(page_xml(page).encode()))
        fh.write(bz2.compress(b"</mediawiki>\n"))
    return offsets


def dump_text() -> str:
    return SITEINFO + "".join(page_xml(p) for p in dump_pages()) + "</mediawiki>\n"


def write_parquet_shards(directory: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    directory.mkdir(parents=True, exist_ok=True)
    for n, rows in enumerate((EXPECTED[:3], EXPECTED[3:])):
        table = pa.table({c: [r[c] for r in rows] for c in ("id", "url", "title", "text")})
        pq.write_table(table, directory / f"train-0000{n}-of-00002.parquet", row_group_size=2)
    return directory


def write_jsonl(path: Path, rows, opener=open) -> Path:
    with opener(path, "wt", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def write_wikiextractor(directory: Path) -> Path:
    """wikiextractor --json output: text/AA/wiki_00, ASCII-escaped JSON, int-like ids, ?curid= urls."""
    (directory / "AA").mkdir(parents=True)
    with open(directory / "AA" / "wiki_00", "w", encoding="utf-8") as fh:
        for r in EXPECTED:
            fh.write(json.dumps({"id": int(r["id"]), "revid": f"6{r['id']}000",
                                 "url": f"https://pt.wikipedia.org/wiki?curid={r['id']}",
                                 "title": r["title"], "text": r["text"]}) + "\n")
    return directory


# ------------------------------------------------------------------------------------------------- formats

def write_dump_file(directory: Path, compressed: bool) -> Path:
    path = directory / ("ptwiki-20231101-pages-articles.xml" + (".bz2" if compressed else ""))
    if compressed:
        write_dump_bz2(path)
    else:
        path.write_text(dump_text(), encoding="utf-8")
    return path


SOURCES = {
    "parquet-dir": lambda d: write_parquet_shards(d / "wiki_pt"),
    "parquet-file": lambda d: write_parquet_shards(d / "wiki_pt") / "train-00000-of-00002.parquet",
    "jsonl": lambda d: write_jsonl(d / "corpus.jsonl", EXPECTED),
    "jsonl-gz": lambda d: write_jsonl(d / "corpus.jsonl.gz", EXPECTED, gzip.open),
    "jsonl-bz2": lambda d: write_jsonl(d / "corpus.jsonl.bz2", EXPECTED, bz2.open),
    "wikiextractor-dir": lambda d: write_wikiextractor(d / "text"),
    "dump-xml-bz2": lambda d: write_dump_file(d, compressed=True),
    "dump-xml": lambda d: write_dump_file(d, compressed=False),
}


@pytest.mark.parametrize("kind", list(SOURCES))
def test_every_format_yields_the_same_articles(tmp_path, kind):
    source = SOURCES[kind](tmp_path)
    expected = EXPECTED[:3] if kind == "parquet-file" else EXPECTED
    assert load_articles(source) == expected


@pytest.mark.parametrize("article", ARTICLES, ids=[a["title"] for a in ARTICLES])
def test_wikitext_becomes_clean_paragraphs(article):
    assert wikitext_to_text(article["wikitext"]) == article["text"]


def test_dump_skips_redirects_other_namespaces_and_disambiguation(tmp_path):
    stats = CorpusStats()
    titles = [a["title"] for a in iter_articles(SOURCES["dump-xml-bz2"](tmp_path), stats=stats)]
    assert titles == [a["title"] for a in ARTICLES]
    assert stats.skipped == {"redirect": 1, "namespace": 1, "disambiguation": 1}
    assert stats.articles == 6 and not stats.truncated
    assert stats.words == sum(len(a["text"].split()) for a in ARTICLES)


def test_limit_stops_early(tmp_path):
    assert [a["id"] for a in iter_articles(SOURCES["dump-xml-bz2"](tmp_path), limit=2)] == ["101", "102"]


def test_empty_articles_are_skipped(tmp_path):
    rows = EXPECTED[:2] + [{"id": "9", "url": "", "title": "Vazio", "text": "  \n"}]
    summary = corpus_summary(write_jsonl(tmp_path / "c.jsonl", rows))
    assert summary == {"articles": 2, "skipped": {"empty": 1}, "words": summary["words"], "truncated": False}


# ------------------------------------------------------------------------------------------------- bad input

def test_malformed_jsonl_line_names_file_and_line(tmp_path):
    path = tmp_path / "corpus.jsonl"
    lines = [json.dumps(r, ensure_ascii=False) for r in EXPECTED]
    lines.insert(2, '{"id": "7", "title": "Quebrado", "text": ')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ProjectError) as err:
        load_articles(path)
    assert "linha 3" in err.value.message and str(path) in err.value.message
    assert "--skip-bad" in err.value.one_line()


def test_skip_bad_counts_malformed_lines(tmp_path):
    path = tmp_path / "corpus.jsonl"
    lines = [json.dumps(r, ensure_ascii=False) for r in EXPECTED]
    lines[1:1] = ["não é json", '{"title": "sem id", "text": "x"}']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    stats = CorpusStats()
    assert load_articles(path, skip_bad=True, stats=stats) == EXPECTED
    assert stats.skipped == {"malformed": 2}
    assert [line for _, line, _ in stats.bad_lines] == [2, 3]
    assert "falta o campo 'id'" in stats.bad_lines[1][2]


def test_truncated_dump_yields_complete_pages_and_flags_truncation(tmp_path):
    path = tmp_path / "ptwiki-20231101-pages-articles-multistream.xml.bz2"
    offsets = write_dump_bz2(path)
    data = path.read_bytes()
    cut = offsets[-1] + 40  # inside the stream that holds the last article
    path.write_bytes(data[:cut])
    stats = CorpusStats()
    with pytest.warns(CorpusWarning, match="termina no meio"):
        articles = load_articles(path, stats=stats)
    assert articles == EXPECTED[:-1]
    assert stats.truncated


def test_truncated_plain_xml_yields_complete_pages(tmp_path):
    text = dump_text()
    path = tmp_path / "ptwiki-20231101-pages-articles.xml"
    path.write_text(text[: text.index("A madeira é densa")], encoding="utf-8")  # cut inside the last page
    stats = CorpusStats()
    with pytest.warns(CorpusWarning):
        assert load_articles(path, stats=stats) == EXPECTED[:-1]
    assert stats.truncated


def test_corrupt_parquet_raises_project_error(tmp_path):
    shards = write_parquet_shards(tmp_path / "wiki_pt")
    shard = shards / "train-00001-of-00002.parquet"
    shard.write_bytes(shard.read_bytes()[:200])  # footer gone, as after an interrupted download
    with pytest.raises(ProjectError, match="train-00001-of-00002.parquet"):
        load_articles(shards)
    stats = CorpusStats()
    assert load_articles(shards, skip_bad=True, stats=stats) == EXPECTED[:3]
    assert stats.skipped["malformed"] == 1


def test_unknown_source_is_a_project_error(tmp_path):
    with pytest.raises(ProjectError, match="não encontrada"):
        load_articles(tmp_path / "nada.jsonl")


@pytest.mark.parametrize("name", ["wikimedia/wikipedia:20231101.pt", "hf://wikimedia/wikipedia/20231101.pt"])
def test_hub_dataset_offline_fails_cleanly(tmp_path, name):
    result = run_module("rag", "corpus", name, "--json",
                        env={"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    assert result.returncode == 2
    assert result.stderr.startswith("erro: ") and "wikimedia/wikipedia:20231101.pt" in result.stderr
    assert "Traceback" not in result.stderr


# ------------------------------------------------------------------------------------------------- CLI

def test_cli_json_summary_matches_counts(tmp_path):
    dump = SOURCES["dump-xml-bz2"](tmp_path)
    result = run_module("rag", "corpus", str(dump), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"articles": 6, "words": sum(len(a["text"].split()) for a in ARTICLES),
                                         "skipped": {"disambiguation": 1, "namespace": 1, "redirect": 1}}


def test_cli_reports_truncation_in_json(tmp_path):
    path = tmp_path / "ptwiki-20231101-pages-articles.xml.bz2"
    offsets = write_dump_bz2(path)
    path.write_bytes(path.read_bytes()[: offsets[-1] + 40])
    result = run_module("rag", "corpus", str(path), "--json")
    assert result.returncode == 0
    assert json.loads(result.stdout)["truncated"] is True
    assert "aviso:" in result.stderr


def test_cli_help_and_human_summary(tmp_path):
    assert "corpus" in run_module("rag", "--help").stdout
    assert "--skip-bad" in run_module("rag", "corpus", "--help").stdout
    result = run_module("rag", "corpus", str(SOURCES["jsonl"](tmp_path)))
    assert result.returncode == 0 and result.stdout.startswith("6 artigos")


def test_cli_error_is_one_line_without_traceback(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text("{quebrado\n", encoding="utf-8")
    result = run_module("rag", "corpus", str(path))
    assert result.returncode == 2
    assert result.stderr.startswith("erro: linha 1 de ") and "Traceback" not in result.stderr


# ------------------------------------------------------------------------------------------------- build + check

def _long_text(article: dict) -> str:
    """The fixture text padded to the shipped 200–600 word range."""
    filler = ("Este parágrafo de preenchimento existe só para o teste e repete uma frase simples sobre o tema "
              "para que o artigo tenha o tamanho dos artigos publicados. ")
    return article["text"] + "\n\n" + (filler * 12).strip()


def write_sources(sources: Path) -> None:
    """Hand-written sources in the layout data/build.py reads: two families, 3 questions per article."""
    families = {"geografia": ARTICLES[0:1] + ARTICLES[3:4], "ciencia": ARTICLES[1:2]}
    (sources / "wiki_pt").mkdir(parents=True)
    (sources / "qa").mkdir(parents=True)
    qa = []
    for family, articles in families.items():
        write_jsonl(sources / "wiki_pt" / f"{family}.jsonl",
                    [{"id": a["id"], "url": a["url"], "title": a["title"], "text": _long_text(a)} for a in articles])
        for a in articles:
            first_sentence = a["text"].split(". ")[0] + "."
            for k, (question, answer) in enumerate([(f"Do que trata o artigo {a['title']}?", a["title"].split()[0]),
                                                    (f"Qual é a primeira frase sobre {a['title']}?", a["title"]),
                                                    (f"O que diz o texto de {a['title']}?", a["title"])]):
                evidence = first_sentence if answer.casefold() in first_sentence.casefold() else a["text"]
                qa.append({"id": f"{a['id']}-q{k + 1}", "source_id": a["id"], "question": question,
                           "answer": answer, "aliases": [], "evidence": evidence})
    write_jsonl(sources / "qa" / "perguntas.jsonl", qa)
    write_jsonl(sources / "qa" / "general.jsonl",
                [{"id": "geral-001", "question": "Qual é a capital do Brasil?", "answer": "Brasília",
                  "aliases": ["Brasilia"], "category": "geografia"},
                 {"id": "geral-002", "question": "Quanto é 7 vezes 8?", "answer": "56", "aliases": ["cinquenta e seis"],
                  "category": "matemática"}])


def run_build(sources: Path, out: Path):
    return subprocess.run([sys.executable, str(ROOT / "data" / "build.py"), "--sources", str(sources),
                           "--out", str(out), "--no-check"], cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.fixture()
def built(tmp_path) -> Path:
    write_sources(tmp_path / "sources")
    result = run_build(tmp_path / "sources", tmp_path / "data")
    assert result.returncode == 0, result.stderr
    return tmp_path / "data"


def test_build_splits_one_question_per_article_into_test(built):
    test = [json.loads(line) for line in (built / "qa" / "test.jsonl").read_text(encoding="utf-8").splitlines()]
    train = [json.loads(line) for line in (built / "qa" / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted(q["source_id"] for q in test) == ["101", "102", "104"]
    assert len(train) == 6 and {q["split"] for q in train} == {"train"}
    assert json.loads((built / "families.json").read_text()) == {"ciencia": 1, "geografia": 2}
    general = [json.loads(line) for line in (built / "qa" / "general.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(q["split"], q["source_id"], q["category"]) for q in general] == [("general", None, "geografia"),
                                                                               ("general", None, "matemática")]


def test_build_is_idempotent(built, tmp_path):
    before = {p: p.read_bytes() for p in built.rglob("*") if p.is_file()}
    result = run_build(tmp_path / "sources", built)
    assert result.returncode == 0
    assert {p: p.read_bytes() for p in built.rglob("*") if p.is_file()} == before
    assert "arquivos alterados: 0" in result.stdout


def test_build_writes_parquet_in_the_hub_schema(built):
    import pyarrow.parquet as pq

    table = pq.read_table(built / "wiki_pt" / "train-00000-of-00001.parquet")
    assert table.schema.names == ["id", "url", "title", "text"]
    assert all(str(t) == "string" for t in table.schema.types)
    assert table.column("id").to_pylist() == ["101", "102", "104"]


def test_check_passes_on_a_consistent_build(built):
    assert check_corpus(built / "wiki_pt", built / "qa") == []


def test_check_flags_a_test_question_leaked_into_instructions(built):
    test_q = json.loads((built / "qa" / "test.jsonl").read_text(encoding="utf-8").splitlines()[0])
    leaked = test_q["question"].upper().replace("?", " ?!")  # case and punctuation do not hide a leak
    (built / "instructions").mkdir()
    write_jsonl(built / "instructions" / "sft.jsonl",
                [{"text": "### Pergunta:\nQual é a cor do céu?\n### Resposta:\nAzul."},
                 {"text": f"### Pergunta:\n{leaked}\n### Resposta:\n{test_q['answer']}"}])
    result = run_module("rag", "corpus", str(built / "wiki_pt"), "--check")
    assert result.returncode == 1
    assert "contaminação" in result.stdout and test_q["question"] in result.stdout
    assert "sft.jsonl" in result.stdout


def test_check_flags_evidence_not_in_article(built):
    path = built / "qa" / "train.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    rows[0]["evidence"] = "Uma frase que não está em artigo nenhum."
    write_jsonl(path, rows)
    problems = check_corpus(built / "wiki_pt", built / "qa")
    assert any("evidência não é um trecho literal" in p for p in problems)


def test_question_normalization_ignores_case_accents_and_punctuation():
    assert normalize_question("  Qual é a CAPITAL do Brasil?! ") == normalize_question("qual e a capital do brasil")


SHIPPED = ROOT / "data" / "wiki_pt"


@pytest.mark.skipif(not SHIPPED.exists(), reason="data/wiki_pt ainda não foi gerado (python data/build.py)")
def test_shipped_corpus_and_questions_pass_the_check():
    assert check_corpus(SHIPPED, ROOT / "data" / "qa") == []

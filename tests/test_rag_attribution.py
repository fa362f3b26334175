"""Context compression and post-hoc citation attribution (rag/attribution.py), and their use in the pipeline."""
from rag.attribution import attribute, select_sentences, split_sentences, support
from rag.pipeline import NOT_FOUND, PROMPT_STYLES, CitedStream

IGUACU = ("O Parque Nacional do Iguaçu fica no oeste do Paraná. Foi criado em 10 de janeiro de 1939. "
          "Protege as Cataratas do Iguaçu. Em 1986 foi declarado Patrimônio Mundial pela UNESCO.")
TIJUCA = "O Parque Nacional da Tijuca fica no Rio de Janeiro. Foi criado em 1961 com outro nome."
QUESTION = "Em que ano foi criado o Parque Nacional do Iguaçu?"


def test_split_sentences_keeps_abbreviations_and_numbers_together():
    assert split_sentences(IGUACU) == [
        "O Parque Nacional do Iguaçu fica no oeste do Paraná.", "Foi criado em 10 de janeiro de 1939.",
        "Protege as Cataratas do Iguaçu.", "Em 1986 foi declarado Patrimônio Mundial pela UNESCO."]
    assert split_sentences("Nasceu em 1.500 a.C. e morreu cedo.") == ["Nasceu em 1.500 a.C. e morreu cedo."]


def test_select_sentences_keeps_the_question_relevant_ones_in_order():
    kept = select_sentences(QUESTION, IGUACU, 2)
    assert kept == "O Parque Nacional do Iguaçu fica no oeste do Paraná. Foi criado em 10 de janeiro de 1939."
    assert select_sentences(QUESTION, IGUACU, 0) == IGUACU          # 0 = off
    assert select_sentences(QUESTION, TIJUCA, 5) == TIJUCA          # already short enough


def test_support_counts_only_words_the_question_did_not_bring():
    scores = support("Foi criado em 1939.", QUESTION, [TIJUCA, IGUACU])
    assert scores[1] == 1.0 and scores[0] == 0.0   # "criado" is in both, but it came from the question


def test_attribute_adds_a_missing_citation_to_the_supporting_passage():
    res = attribute("Em 1939.", QUESTION, [TIJUCA, IGUACU])
    assert res.action == "added" and res.text == "Em 1939 [2]."
    assert attribute("1939", QUESTION, [TIJUCA, IGUACU]).text == "1939 [2]"


def test_attribute_moves_a_citation_to_the_passage_that_supports_the_answer():
    res = attribute("Foi criado em 1939 [1].", QUESTION, [TIJUCA, IGUACU])
    assert res.action == "moved" and res.text == "Foi criado em 1939 [2]."
    # a citation that is already right, or out of range, or duplicated after the fix
    assert attribute("Foi criado em 1939 [2].", QUESTION, [TIJUCA, IGUACU]).action == "kept"
    assert attribute("Em 1939 [7].", QUESTION, [TIJUCA, IGUACU]).text == "Em 1939 [2]."
    assert attribute("Em 1939 [1] [2].", QUESTION, [TIJUCA, IGUACU]).text == "Em 1939 [2]."


def test_attribute_leaves_abstentions_and_unsupported_answers_alone():
    assert attribute(NOT_FOUND, QUESTION, [IGUACU]).text == NOT_FOUND
    res = attribute("Não sei dizer, talvez em Marte.", QUESTION, [TIJUCA, IGUACU])
    assert res.action == "none" and "[" not in res.text
    assert attribute("", QUESTION, [IGUACU]).action == "none"


class _Fake:
    """Stands in for models.runtime.ChatStream: the pieces a model would stream."""

    def __init__(self, pieces):
        self.pieces, self.text, self.stats, self.model = pieces, "", None, None

    def __iter__(self):
        for p in self.pieces:
            self.text += p
            yield p


def test_cited_stream_streams_the_added_citation_as_a_last_piece():
    s = CitedStream(_Fake(["Em ", "1939"]), QUESTION, [TIJUCA, IGUACU])
    assert list(s) == ["Em ", "1939", " [2]"] and s.text == "Em 1939 [2]"
    assert s.attribution.action == "added"
    dot = CitedStream(_Fake(["Em 1939."]), QUESTION, [TIJUCA, IGUACU])
    assert list(dot) == ["Em 1939."] and dot.text == "Em 1939 [2]."
    moved = CitedStream(_Fake(["Em 1939 [1]."]), QUESTION, [TIJUCA, IGUACU])
    assert "".join(moved) == "Em 1939 [1]." and moved.text == "Em 1939 [2]."   # the app re-renders from .text


def test_compressing_styles_exist_and_differ_only_by_compression():
    from dataclasses import replace

    assert PROMPT_STYLES["v6"].compress == 2 and PROMPT_STYLES["v7"].compress == 3
    assert replace(PROMPT_STYLES["v6"], compress=0) == PROMPT_STYLES["v5"]

"""Tokenizer ids equal OpenAI's SimpleTokenizer on tricky strings (reference ids stored in fixtures/)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from clip4idc.tokenizer import EOT_ID, SOT_ID, Tokenizer, default_tokenizer

CASES = json.loads((Path(__file__).parent / "fixtures" / "tokenizer_reference.json").read_text())["cases"]


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return default_tokenizer()


def test_vocabulary_size(tok):
    assert tok.vocab_size == 49408
    assert tok.encoder["<|startoftext|>"] == SOT_ID and tok.encoder["<|endoftext|>"] == EOT_ID


@pytest.mark.parametrize("case", CASES, ids=[c["text"][:20] or "<empty>" for c in CASES])
def test_ids_match_openai(tok, case):
    assert tok.encode(case["text"]) == case["ids"]
    assert tok.decode(case["ids"]) == case["decoded"]


def test_round_trip_of_plain_captions(tok):
    for text in ("the small red metal cube has been moved", "there is no change", "a 3 4 b"):
        assert tok.decode(tok.encode(text)).strip() == text


def test_caption_text_stop_rule(tok):
    ids = tok.encode("the cube moved") + [EOT_ID] + tok.encode("junk")
    assert tok.caption_text(ids) == "the cube moved"
    assert tok.caption_text(tok.encode("the cube") + [0, 0, 0]) == "the cube"  # pad id 0 decodes to "!"


def test_batch_and_caption_targets(tok):
    ids, mask = tok.batch(["a red cube", "x " * 50], max_words=8)
    assert ids.shape == (2, 8) and ids[0, 0] == SOT_ID
    assert ids[0].tolist()[: int(mask[0].sum())][-1] == EOT_ID and ids[1, -1] == EOT_ID
    assert torch.equal(mask[1], torch.ones(8, dtype=torch.long))
    inp, out, dmask = tok.caption_targets(["a red cube"], max_words=8)
    n = len(tok.encode("a red cube"))
    assert inp[0, : n + 1].tolist() == [SOT_ID] + tok.encode("a red cube")
    assert out[0, : n + 1].tolist() == tok.encode("a red cube") + [EOT_ID]
    assert dmask[0].sum() == n + 1 and inp[0, n + 1 :].sum() == 0

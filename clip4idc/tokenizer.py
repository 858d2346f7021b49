"""CLIP's byte-level BPE tokenizer, giving the same ids as OpenAI's ``SimpleTokenizer``.

Text is cleaned (ftfy, HTML unescape, whitespace collapse), lower-cased, split with CLIP's regex, mapped
byte-by-byte onto printable unicode characters and merged with the 48,894 merges of
``bpe_simple_vocab_16e6.txt.gz``. Vocabulary: 256 byte characters, the same with an end-of-word marker,
the merges, then ``<|startoftext|>`` (49406) and ``<|endoftext|>`` (49407); 49,408 entries.
"""

from __future__ import annotations

import gzip
import html
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import ftfy
import regex
import torch

VOCAB_FILE = Path(__file__).with_name("bpe_simple_vocab_16e6.txt.gz")
SOT_TEXT, EOT_TEXT = "<|startoftext|>", "<|endoftext|>"
SOT_ID, EOT_ID, PAD_ID = 49406, 49407, 0
_NUM_MERGES = 49152 - 256 - 2  # 48,894 merges after the header line

_SPLIT = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE,
)


@lru_cache
def byte_to_unicode() -> dict[int, str]:
    """Map every byte to a printable unicode character (the GPT-2 / CLIP convention)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


def clean_text(text: str) -> str:
    """ftfy fix, HTML unescape (twice, for doubly escaped entities), whitespace collapse, lower case."""
    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    return regex.sub(r"\s+", " ", text).strip().lower()


def _pairs(word: tuple[str, ...]) -> set[tuple[str, str]]:
    return {(a, b) for a, b in zip(word, word[1:])}


class Tokenizer:
    """CLIP BPE tokenizer. ``encode`` gives BPE ids without start/end ids; ``batch`` makes model inputs."""

    sot_id = SOT_ID
    eot_id = EOT_ID
    pad_id = PAD_ID

    def __init__(self, vocab_file: str | Path = VOCAB_FILE) -> None:
        lines = gzip.open(vocab_file, "rt", encoding="utf-8").read().split("\n")
        merges = [tuple(line.split()) for line in lines[1 : _NUM_MERGES + 1]]
        self.byte_encoder = byte_to_unicode()
        self.byte_decoder = {v: k for k, v in self.byte_encoder.items()}
        vocab = list(self.byte_encoder.values())
        vocab += [v + "</w>" for v in vocab]
        vocab += ["".join(m) for m in merges]
        vocab += [SOT_TEXT, EOT_TEXT]
        self.encoder = {tok: i for i, tok in enumerate(vocab)}
        self.decoder = dict(enumerate(vocab))
        self.bpe_ranks = {m: i for i, m in enumerate(merges)}
        self._cache = {SOT_TEXT: SOT_TEXT, EOT_TEXT: EOT_TEXT}

    @property
    def vocab_size(self) -> int:
        return len(self.encoder)

    def bpe(self, token: str) -> str:
        """Merge one pre-token's characters by rank; returns space-separated BPE units."""
        if token in self._cache:
            return self._cache[token]
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        pairs = _pairs(word)
        if not pairs:
            return token + "</w>"
        while True:
            bigram = min(pairs, key=lambda p: self.bpe_ranks.get(p, float("inf")))
            if bigram not in self.bpe_ranks:
                break
            first, second = bigram
            merged: list[str] = []
            i = 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                except ValueError:
                    merged.extend(word[i:])
                    break
                merged.extend(word[i:j])
                i = j
                if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = tuple(merged)
            if len(word) == 1:
                break
            pairs = _pairs(word)
        out = " ".join(word)
        self._cache[token] = out
        return out

    def encode(self, text: str) -> list[int]:
        """BPE ids of ``text`` with no start or end id."""
        ids: list[int] = []
        for piece in _SPLIT.findall(clean_text(text)):
            piece = "".join(self.byte_encoder[b] for b in piece.encode("utf-8"))
            ids.extend(self.encoder[unit] for unit in self.bpe(piece).split(" "))
        return ids

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """Join tokens, turn end-of-word markers into spaces (as CLIP does; trailing space kept)."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        text = "".join(self.decoder[int(i)] for i in ids)
        raw = bytearray(self.byte_decoder[c] for c in text)
        return raw.decode("utf-8", errors="replace").replace("</w>", " ")

    def caption_text(self, ids: Sequence[int] | torch.Tensor) -> str:
        """Generated ids → caption, with the original's stop rule: cut at ``<|endoftext|>``, then at the
        first ``!`` (pad id 0 decodes to ``!``), then strip."""
        text = self.decode(ids)
        text = text.split(EOT_TEXT)[0]
        text = text.split("!")[0]
        return text.strip()

    def batch(self, texts: Sequence[str], max_words: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
        """Text-encoder inputs: ``[SOT] + bpe[:max_words-2] + [EOT]``, 0-padded; returns (ids, mask)."""
        ids = torch.zeros(len(texts), max_words, dtype=torch.long)
        mask = torch.zeros(len(texts), max_words, dtype=torch.long)
        for row, text in enumerate(texts):
            toks = [SOT_ID] + self.encode(text)[: max_words - 2] + [EOT_ID]
            ids[row, : len(toks)] = torch.tensor(toks)
            mask[row, : len(toks)] = 1
        return ids, mask

    def caption_targets(
        self, texts: Sequence[str], max_words: int = 32
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Teacher-forcing inputs as the original caption loader builds them.

        Tokens are truncated to ``max_words-1``; returns ``(input_ids, output_ids, decoder_mask)`` with
        ``input = [SOT] + toks`` and ``output = toks + [EOT]``, 0-padded, mask 1 on ``len(toks)+1`` places.
        """
        n = len(texts)
        inp = torch.zeros(n, max_words, dtype=torch.long)
        out = torch.zeros(n, max_words, dtype=torch.long)
        mask = torch.zeros(n, max_words, dtype=torch.long)
        for row, text in enumerate(texts):
            toks = self.encode(text)[: max_words - 1]
            inp[row, : len(toks) + 1] = torch.tensor([SOT_ID] + toks)
            out[row, : len(toks) + 1] = torch.tensor(toks + [EOT_ID])
            mask[row, : len(toks) + 1] = 1
        return inp, out, mask


@lru_cache(maxsize=1)
def default_tokenizer() -> Tokenizer:
    """Shared instance: building the merge table takes ~0.3 s."""
    return Tokenizer()


def trim_padding(ids: torch.Tensor) -> torch.Tensor:
    """Token ids (..., L) cut after the last column any row uses: a causal text tower pools at the end
    token, so trailing padding changes nothing but the cost."""
    used = (ids != 0).flatten(0, -2).any(dim=0).nonzero()
    return ids[..., : int(used.max()) + 1] if len(used) else ids

"""A small, deterministic retrieval-augmented generation pipeline to measure.

Retrieval is a bag-of-words cosine search over generated documents; "generation" stitches
the top passages into an answer. Small enough to run in a second, real enough to have the
latency / throughput / step breakdown a RAG team tracks.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import re
import time
from collections import Counter
from dataclasses import dataclass

WORDS = [
    "vector",
    "index",
    "latency",
    "cache",
    "embedding",
    "query",
    "document",
    "retrieval",
    "ranking",
    "answer",
    "model",
    "token",
    "context",
    "window",
    "chunk",
    "overlap",
    "recall",
    "precision",
    "score",
    "batch",
    "shard",
    "replica",
]

_TOKEN = re.compile(r"[a-z]+")


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def embed(text: str) -> dict[str, float]:
    counts = Counter(tokenize(text))
    norm = math.sqrt(sum(v * v for v in counts.values())) or 1.0
    return {word: v / norm for word, v in counts.items()}


def cosine(a: dict[str, float], b: dict[str, float]) -> float:
    if len(a) > len(b):
        a, b = b, a
    return sum(v * b.get(k, 0.0) for k, v in a.items())


@dataclass
class RagPipeline:
    documents: list[str]
    vectors: list[dict[str, float]]

    @classmethod
    def build(cls, n_documents: int, seed: int = 7) -> RagPipeline:
        rng = random.Random(seed)
        documents = [" ".join(rng.choices(WORDS, k=40)) for _ in range(n_documents)]
        return cls(documents, [embed(doc) for doc in documents])

    def retrieve(self, query: str, k: int = 5) -> list[str]:
        vector = embed(query)
        scored = sorted(range(len(self.vectors)), key=lambda i: -cosine(vector, self.vectors[i]))
        return [self.documents[i] for i in scored[:k]]

    def generate(self, query: str, passages: list[str]) -> str:
        # Stand-in for a model call: hashing work proportional to the context size.
        digest = hashlib.sha256(query.encode())
        for passage in passages:
            for _ in range(20):
                digest.update(passage.encode())
        _slowdown()
        return f"{query}: {digest.hexdigest()[:16]}"

    def answer(self, query: str) -> str:
        return self.generate(query, self.retrieve(query))


def _slowdown() -> None:
    """EXAMPLE_SLOWDOWN_MS=50 simulates a regression, to see the gate fail."""
    delay = float(os.environ.get("EXAMPLE_SLOWDOWN_MS", "0"))
    if delay:
        time.sleep(delay / 1000)

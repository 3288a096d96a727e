"""Shared fixtures of the example suite: a tiny in-memory RAG pipeline."""

from __future__ import annotations

import pytest
from rag_pipeline import RagPipeline


@pytest.fixture(scope="module")
def pipeline() -> RagPipeline:
    return RagPipeline.build(n_documents=2_000)

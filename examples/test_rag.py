"""Performance tests of the example RAG pipeline, the way a RAG team writes them."""

from __future__ import annotations

import time

import pytest
from rag_pipeline import RagPipeline, tokenize

QUERIES = ["vector index latency", "cache recall precision", "token context window"]


@pytest.mark.perf(metric="query_latency", direction="lower", rounds=5, warmup=1)
def test_query_latency(pipeline: RagPipeline) -> None:
    answer = pipeline.answer("vector index latency")
    assert answer.startswith("vector index latency")


@pytest.mark.perf(metric="queries_per_second", direction="higher", unit="q/s")
def test_throughput(pipeline: RagPipeline, perf) -> None:
    start = time.perf_counter()
    for query in QUERIES * 3:
        pipeline.answer(query)
    perf.record(
        "queries_per_second",
        len(QUERIES) * 3 / (time.perf_counter() - start),
        unit="q/s",
        direction="higher",
    )


@pytest.mark.perf(metric="pipeline_total")
def test_pipeline_steps(pipeline: RagPipeline, perf) -> None:
    start = time.perf_counter()
    with perf.measure("retrieve"):
        passages = pipeline.retrieve("embedding model batch")
    with perf.measure("generate"):
        answer = pipeline.generate("embedding model batch", passages)
    perf.record("pipeline_total", time.perf_counter() - start, unit="s")
    perf.record(
        "retrieval_hit_rate",
        sum("embedding" in p for p in passages) / len(passages),
        unit="ratio",
        direction="higher",
    )
    assert answer


@pytest.mark.perf(metric="tokenize_time")
def test_tokenize_benchmark(perf) -> None:
    text = " ".join(["retrieval augmented generation"] * 200)
    tokens = perf.benchmark(tokenize, text)
    assert len(tokens) == 600


def test_unmarked_tests_are_measured_too(pipeline: RagPipeline) -> None:
    assert len(pipeline.retrieve("shard replica", k=3)) == 3

"""The head's version: builds the slug with one join."""

from __future__ import annotations


def slugify_all(titles: list[str]) -> str:
    return "\n".join("-".join(word.lower() for word in title.split()) for title in titles)

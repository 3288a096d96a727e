"""The base's version: the same output, built by repeated string concatenation and a
character-by-character lower-casing."""

from __future__ import annotations


def slugify_all(titles: list[str]) -> str:
    out = ""
    for index, title in enumerate(titles):
        slug = ""
        for word in title.split():
            lowered = ""
            for char in word:
                lowered += char.lower()
            slug = lowered if not slug else slug + "-" + lowered
        out = slug if index == 0 else out + "\n" + slug
    return out

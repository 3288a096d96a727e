"""Baselines and histories under the detailed keys of 0.x, carried over to today's keys.

Until the default key named what a person means by a platform (see `platform`), keys named
CPU model and core count: ``GitHub_Actions_Linux_x86_64_EPYC_7763_4c_16GB`` one day,
``..._Xeon_8370C_4c_16GB`` the next. Two ways forward, both here:

- at gate time, a baselines file with no section for this run's key reads the newest
  section whose old key maps to it (`adopt_legacy_baselines`), and says so;
- ``perfguard platform migrate`` renames them for good, in the baselines file
  (`migrate_baselines`) and in the history (`History.rename_platform`).

A section moved over keeps the hardware its old key named, so a verdict against it says
when this run's hardware differs. Pure: no pytest, no SQLAlchemy.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from .baselines import BaselineFile, PlatformBaselines
from .platform import hardware, hardware_difference, legacy_key_target, parse_detailed_key


def legacy_targets(keys: list[str]) -> dict[str, str]:
    """Old key -> today's key, for each of `keys` that is a detailed 0.x key."""
    found = {}
    for key in keys:
        target = legacy_key_target(key)
        if target is not None and target != key:
            found[key] = target
    return found


def baseline_hardware(section: PlatformBaselines, key: str) -> dict[str, Any]:
    """The hardware a platform's baselines were recorded on: as recorded at update time,
    else as its detailed key spells it out, else nothing known."""
    recorded = section.metadata.extra.get("hardware")
    if isinstance(recorded, Mapping):
        return dict(recorded)
    parsed = parse_detailed_key(key)
    return hardware(parsed) if parsed else {}


def _newest_first(file: BaselineFile, keys: list[str]) -> list[str]:
    return sorted(keys, key=lambda k: file.platforms[k].metadata.last_updated or "", reverse=True)


def _merged(file: BaselineFile, keys: list[str]) -> PlatformBaselines:
    """One section from several: the newest section's entries win, older ones fill gaps."""
    ordered = _newest_first(file, keys)
    merged = PlatformBaselines()
    for key in reversed(ordered):
        section = file.platforms[key]
        for test, metrics in section.tests.items():
            merged.tests.setdefault(test, {}).update(metrics)
        merged.metrics.update(section.metrics)
    newest = file.platforms[ordered[0]]
    extra = {
        **newest.metadata.extra,
        "hardware": baseline_hardware(newest, ordered[0]),
        "migrated_from": ordered,
    }
    merged.metadata = replace(newest.metadata, extra=extra)
    return merged


def adopt_legacy_baselines(file: BaselineFile, key: str) -> tuple[BaselineFile, str | None]:
    """`file` with a section for `key` taken from old keys that map to it, and a note
    saying so; unchanged (and no note) when `key` has its own section or none maps."""
    if key in file.platforms:
        return file, None
    old = [k for k, target in legacy_targets(list(file.platforms)).items() if target == key]
    if not old:
        return file, None
    adopted = copy.deepcopy(file)
    adopted.platforms[key] = _merged(file, old)
    note = (
        f"baselines of platform {key} read from old key{'s' if len(old) > 1 else ''} "
        f"{', '.join(_newest_first(file, old))}; `perfguard platform migrate` renames them"
    )
    return adopted, note


def migrate_baselines(file: BaselineFile) -> tuple[BaselineFile, dict[str, str]]:
    """Every old-key section renamed to today's key (merged with one already there, whose
    entries win); returns the new file and old key -> new key."""
    moves = legacy_targets(list(file.platforms))
    if not moves:
        return file, {}
    new = copy.deepcopy(file)
    for target in sorted(set(moves.values())):
        old = [k for k, t in moves.items() if t == target]
        merged = _merged(file, old)
        if target in file.platforms:
            current = new.platforms[target]
            for test, metrics in merged.tests.items():
                for metric, entry in metrics.items():
                    current.tests.setdefault(test, {}).setdefault(metric, entry)
            for metric, entry in merged.metrics.items():
                current.metrics.setdefault(metric, entry)
        else:
            new.platforms[target] = merged
        for key in old:
            del new.platforms[key]
    return new, moves


def hardware_note(file: BaselineFile, key: str, fingerprint: Mapping[str, Any]) -> str | None:
    """'baseline from EPYC 7763 x4, this run Xeon 8370C x4' when this run's hardware is
    not the hardware the platform's baselines were recorded on; None if it is, or unknown."""
    section = file.platforms.get(key)
    if section is None:
        return None
    return hardware_difference(baseline_hardware(section, key), hardware(fingerprint))

"""The store revisions the documentation shows are real: every revision id in docs/*.md and README.md is
one of src/novita_gpu/kit/migrations/versions/, the one shown as a store's current or target revision (`db
current`, `db upgrade`) is the head, and the one shown for a store migrated by a newer release is above
the head. So the examples cannot drift again when a migration is added (they showed 0004 at 0007)."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from novita_gpu.kit.migrations import alembic_config

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
ID = r"(\d{4})"

# Where a revision id shows, and what it must be. A mention matched by an earlier kind is not looked at
# again by a later one (a newer store's revision is not a known one).
NEWER = [
    rf"migrated by a newer novita-gpu \(revision {ID}\)",  # serve's start-up error
    rf"at revision {ID}: migrated by a newer",  # db current
]
HEAD = [
    rf"at revision {ID}: (?:already )?up to date",  # db current, db upgrade
    rf"to revision {ID}\b",  # db upgrade: upgraded from X to revision HEAD
    rf"knows up to {ID}\b",  # db current, a newer store
    rf"behind {ID}\b",  # db current, an older store
    rf"\b{ID} is this release's newest",
    rf"newest is {ID}\b",
]
KNOWN = [
    rf"\brevisions? {ID}\b",
    rf"\bfrom {ID} to revision",
    rf"\bmigrations? {ID}\b",
    rf"\b{ID}_[a-z0-9_]+\.py\b",
]


@cache
def scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def revisions() -> set[str]:
    return {script.revision for script in scripts().walk_revisions()}


def head() -> str:
    current = scripts().get_current_head()
    assert current is not None
    return current


def mentions(text: str) -> list[tuple[str, str, str]]:
    """(kind, revision id, the line) of every revision id the text shows: newer, head or known."""
    found: list[tuple[str, str, str]] = []
    for line in text.splitlines():
        taken: set[int] = set()  # start offsets of ids already classified
        for kind, patterns in (("newer", NEWER), ("head", HEAD), ("known", KNOWN)):
            for pattern in patterns:
                for match in re.finditer(pattern, line):
                    if match.start(1) not in taken:
                        taken.add(match.start(1))
                        found.append((kind, match.group(1), line.strip()))
    return found


def problems(text: str) -> list[str]:
    known, newest = revisions(), head()
    wrong: list[str] = []
    for kind, revision, line in mentions(text):
        if kind == "newer" and (revision in known or int(revision) <= int(newest)):
            wrong.append(f"{revision} shown as a newer release's, but this one has up to {newest}: {line}")
        elif kind == "head" and revision != newest:
            wrong.append(f"{revision} shown as current, but the head is {newest}: {line}")
        elif kind == "known" and revision not in known:
            wrong.append(f"{revision} is no revision of src/novita_gpu/kit/migrations/versions/: {line}")
    return wrong


def test_the_migrations_are_numbered_as_the_docs_show_them() -> None:
    # Revision ids are the four digits their file names start with (0001_initial_schema.py, ...).
    files = sorted((ROOT / "src" / "novita_gpu" / "kit" / "migrations" / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))
    assert {f.name[:4] for f in files} == revisions()
    assert head() == max(revisions())


def test_the_checker_catches_stale_revisions() -> None:
    newest = head()
    above = f"{int(newest) + 1:04d}"
    good = f"""
        novita-gpu db current   # store sqlite:./data/novita-gpu.db at revision {newest}: up to date
        novita-gpu db upgrade   # store postgresql://app@db:5432/novita upgraded from 0003 to revision {newest}
        error: the store at ... was migrated by a newer novita-gpu (revision {above}); upgrade this one
        store x at revision {above}: migrated by a newer novita-gpu (this one knows up to {newest}): upgrade
        Instances billing when revision 0006 was applied ...; see 0002_failed_at.py
    """
    kinds = [kind for kind, _, _ in mentions(good)]
    assert kinds == ["head", "head", "known", "newer", "newer", "head", "known", "known"]
    assert problems(good) == []
    # What operations.md showed while the store was at 0007.
    stale = """
        novita-gpu db current   # store sqlite:./data/novita-gpu.db at revision 0004: up to date
        novita-gpu db upgrade   # store postgresql://app@db:5432/novita upgraded from 0003 to revision 0004
        error: the store at ... was migrated by a newer novita-gpu (revision 0005); upgrade this one
        the schema of revision 9999 (9999_nothing.py)
    """
    assert len(problems(stale)) == 5, problems(stale)


@pytest.mark.parametrize("document", DOCUMENTS, ids=[path.name for path in DOCUMENTS])
def test_every_revision_the_docs_show_is_real(document: Path) -> None:
    assert not problems(document.read_text())


def test_operations_shows_the_head_as_current() -> None:
    # The reference for `db current` and `db upgrade` shows them at the head (and the checker sees it).
    shown = [
        revision for kind, revision, _ in mentions((ROOT / "docs" / "operations.md").read_text()) if kind == "head"
    ]
    assert shown and set(shown) == {head()}

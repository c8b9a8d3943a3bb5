"""Citations of C behaviour resolve inside the repository.

The source, tests and docs cite the C program's behaviour as ``§N`` / ``§N.M`` (also ``C §N.M``, ranges
``§N.M-§N.K`` or ``§N.M-N.K``). Every such number must be a heading of ``docs/c-behaviour.md``, the
project's own description of what C does, and no file may send the reader to a document outside the
repository (the external reference the port was first written from, or the shared docs folder next to the
checkout). The golden corpus outside the repository (``../shared/golden``) may still be named: it is data,
not the place a citation points to.

What is scanned: the tracked text files under ``src/``, ``tests/``, ``tools/``, ``docs/``, ``plans/``,
``configs/``, ``examples/``, ``.ci/`` and the top-level ``README.md``, ``noxfile.py``, ``tasks.py``
(``reports/`` holds generated evidence bundles and is left out). JSON files spell ``§`` as ``\\u00a7``;
both spellings count.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "c-behaviour.md"
SCANNED = ["src", "tests", "tools", "docs", "plans", "configs", "examples", ".ci",
           "README.md", "noxfile.py", "tasks.py"]

_NUM = r"(\d+(?:\.\d+)?)"
# "§6.5", "§ 6.5", "§3.6-§3.7", "§8.6-8.8", "§§2-7" (en dash too); JSON escapes the sign as \u00a7.
CITATION = re.compile(rf"(?:§|\\u00a7){{1,2}}\s?{_NUM}(?:\s?[-–]\s?(?:§|\\u00a7)?{_NUM})?")
HEADING = re.compile(rf"^#{{2,3}}\s+{_NUM}\.?\s+\S", re.MULTILINE)
# Where a citation must not point: the external reference document and the shared docs folder.
EXTERNAL = re.compile(r"c-reference|shared/docs")


def tracked_text_files() -> list[Path]:
    """The tracked files under SCANNED that decode as UTF-8 text (binary files are skipped)."""
    out = subprocess.run(["git", "ls-files", "-z", "--", *SCANNED], cwd=ROOT, check=True,
                         capture_output=True).stdout
    files = []
    for name in out.decode().split("\0"):
        path = ROOT / name
        if not name or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data:
            continue
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        files.append(path)
    return files


def doc_sections() -> set[str]:
    """Section numbers of docs/c-behaviour.md ('6', '6.5', ...), each heading once."""
    numbers = HEADING.findall(DOC.read_text(encoding="utf-8"))
    duplicates = sorted({n for n in numbers if numbers.count(n) > 1})
    assert not duplicates, f"docs/c-behaviour.md numbers these sections twice: {duplicates}"
    return set(numbers)


def expand(first: str, last: str | None) -> list[str]:
    """The section numbers a citation names: one, or every number of a range such as 8.6-8.8 or 2-7."""
    if last is None:
        return [first]
    a, b = first.split("."), last.split(".")
    if len(a) == len(b) == 1:
        return [str(n) for n in range(int(a[0]), int(b[0]) + 1)]
    if len(a) == len(b) == 2 and a[0] == b[0]:
        return [f"{a[0]}.{n}" for n in range(int(a[1]), int(b[1]) + 1)]
    return [first, last]


def citations(text: str) -> list[tuple[int, str, str]]:
    """(line number, cited text, section number) for every section a text cites."""
    found = []
    for lineno, line in enumerate(text.splitlines(), 1):
        for m in CITATION.finditer(line):
            found += [(lineno, m.group(0), n) for n in expand(m.group(1), m.group(2))]
    return found


def test_citation_parser_reads_every_form():
    # The forms used in the repository, each with the section numbers a reader would look up.
    text = "C §3.1; §2.5 and (§4); §3.6-§3.7, §8.6-8.8, §§2–4; \\u00a77.6"
    assert [n for _, _, n in citations(text)] == ["3.1", "2.5", "4", "3.6", "3.7", "8.6", "8.7", "8.8",
                                                  "2", "3", "4", "7.6"]


def test_doc_has_the_sections_of_the_c_program_description():
    # The numbering follows the C description the citations were written against: sections 1-10,
    # with these subsection counts (1.1-1.3, 2.1-2.11, ...); then the other programs of the C suite
    # (11: noisify, 12: nonBragg).
    counts = {1: 3, 2: 11, 3: 7, 4: 5, 5: 2, 6: 12, 7: 6, 8: 9, 9: 0, 10: 0, 11: 7, 12: 9}
    expected = {str(s) for s in counts} | {f"{s}.{k}" for s, n in counts.items() for k in range(1, n + 1)}
    assert doc_sections() == expected


def test_every_cited_section_is_a_heading_of_c_behaviour_md():
    sections = doc_sections()
    missing = [f"{path.relative_to(ROOT)}:{lineno}: {cited!r} -> {n}"
               for path in tracked_text_files()
               for lineno, cited, n in citations(path.read_text(encoding="utf-8"))
               if n not in sections]
    assert not missing, "citations with no heading in docs/c-behaviour.md:\n" + "\n".join(missing)


def test_no_file_points_at_a_document_outside_the_repository():
    this = Path(__file__).resolve()
    offenders = [f"{path.relative_to(ROOT)}:{lineno}: {line.strip()}"
                 for path in tracked_text_files() if path.resolve() != this
                 for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                 if EXTERNAL.search(line)]
    assert not offenders, "cite docs/c-behaviour.md instead:\n" + "\n".join(offenders)


def test_links_in_c_behaviour_md_resolve():
    # Every relative link of the page names an existing file, and an anchor names a heading of that file
    # (GitHub's anchor: lower case, punctuation dropped, spaces as hyphens).
    def anchors(md: Path) -> set[str]:
        heads = re.findall(r"^#+\s+(.+?)\s*$", md.read_text(encoding="utf-8"), re.MULTILINE)
        return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in heads}

    links = re.findall(r"\]\(([^)#\s]+)(?:#([^)\s]+))?\)", DOC.read_text(encoding="utf-8"))
    relative = [(t, a) for t, a in links if not re.match(r"[a-z]+:", t)]
    assert relative, "the page links the list of intentional differences"
    for target, anchor in relative:
        path = (DOC.parent / target).resolve()
        assert path.is_file(), target
        if anchor:
            assert anchor in anchors(path), f"{target}#{anchor}"

"""``leadflow flows validate`` and ``leadflow flows schema``, called through main() on real files
(the example flows and files written to a temporary directory)."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest

from app.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "flows"
EXAMPLE_FILES = sorted(str(p) for p in EXAMPLES.glob("*.yaml"))

# Three semantic errors in one file: an empty label, a dangling edge, an orphan.
BAD_FLOW = """\
id: bad
version: 1
start: welcome
nodes:
  - id: welcome
    kind: question
    text: Pick one
    buttons:
      - id: a
        label: "   "
        next: nowhere
      - id: b
        label: B
        next: done
  - id: orphan
    kind: end
    text: Never reached
  - id: done
    kind: end
    text: Bye
"""


def write_bad(tmp_path: Path) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD_FLOW, "utf-8")
    return str(path)


def test_validate_accepts_the_example_flows(capsys: pytest.CaptureFixture[str]) -> None:
    """Regression: the shipped example flows stay valid, one `ok:` line per file."""
    assert len(EXAMPLE_FILES) == 3
    assert main(["flows", "validate", *EXAMPLE_FILES]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 3
    for name, line in zip(EXAMPLE_FILES, lines, strict=True):
        assert line.startswith(f"ok: {name} (")
    assert "ok: " in out and "(solar-quote@1, 23 nodes, 5 decision points)" in out
    assert err == ""


def test_validate_reports_every_error_as_file_node_field_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Regression: an invalid flow exits 1 and lists all its errors, not just the first."""
    bad = write_bad(tmp_path)
    assert main(["flows", "validate", bad]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert f"{bad}: welcome.buttons.a.label: label is empty" in lines
    assert f"{bad}: welcome.buttons.a.next: unknown next node 'nowhere'" in lines
    assert f"{bad}: orphan: unreachable from the start node" in lines
    assert lines[-1] == "1 of 1 flow file(s) invalid"


def test_validate_with_good_and_bad_files_checks_them_all(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Regression: one bad file must not stop the others from being validated."""
    bad = write_bad(tmp_path)
    assert main(["flows", "validate", bad, EXAMPLE_FILES[0]]) == 1
    out, err = capsys.readouterr()
    assert out.startswith(f"ok: {EXAMPLE_FILES[0]} (")
    assert "1 of 2 flow file(s) invalid" in err


def test_validate_reports_structural_errors_and_unreadable_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Regression: schema errors and missing files are errors too, never tracebacks."""
    broken = tmp_path / "broken.yaml"
    broken.write_text("id: broken\nversion: 0\nnodes: []\n", "utf-8")
    missing = tmp_path / "missing.yaml"
    assert main(["flows", "validate", str(broken), str(missing)]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1] == "2 of 2 flow file(s) invalid"
    shape = re.compile(rf"^(?:{re.escape(str(broken))}|{re.escape(str(missing))}): \S+: .+$")
    assert all(shape.match(line) for line in lines[:-1]), lines
    broken_lines = [line for line in lines if line.startswith(f"{broken}: ")]
    assert any("'start' is a required property" in line for line in broken_lines)
    assert any("version" in line for line in broken_lines)
    assert any(line.startswith(f"{missing}: (flow): cannot read file") for line in lines)


def test_validate_needs_at_least_one_file() -> None:
    """Regression: `flows validate` without files is a usage error (exit 2), not success."""
    with pytest.raises(SystemExit) as info:
        main(["flows", "validate"])
    assert info.value.code == 2


def test_schema_prints_the_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    """Regression: `flows schema` prints valid JSON Schema for editors to use."""
    assert main(["flows", "schema"]) == 0
    schema = orjson.loads(capsys.readouterr().out)
    assert "$schema" in schema
    assert "nodes" in schema["properties"]


def test_validate_refuses_hostile_files_with_one_line_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Regression (issue 14): an alias bomb (MemoryError after 35 s), deep nesting
    (RecursionError traceback), a 5 MB file (over a minute) and a duplicate key
    (silently accepted) each give one `file: (flow): message` line and exit 1."""
    levels = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    levels += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    files = {
        "bomb.yaml": "\n".join(levels),
        "deep.yaml": "id: " + "[" * 50_000 + "]" * 50_000,
        "big.yaml": "id: big\n" + "# padding\n" * 500_000,
        "dup.yaml": EXAMPLES.joinpath("solar-quote.yaml")
        .read_text("utf-8")
        .replace("version: 1\n", "version: 1\nversion: 2\n"),
    }
    paths = []
    for name, text in files.items():
        (tmp_path / name).write_text(text, "utf-8")
        paths.append(str(tmp_path / name))
    assert main(["flows", "validate", *paths]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert lines[-1] == "4 of 4 flow file(s) invalid"
    assert [line.split(": ", 1)[0] for line in lines[:-1]] == paths
    assert all(": (flow): " in line for line in lines[:-1])
    assert "anchors and aliases are not supported" in lines[0]
    assert "nested more than 16 levels deep" in lines[1]
    assert "a flow may have at most 262144 bytes" in lines[2]
    assert "duplicate key 'version'" in lines[3]

"""docs/protocol.md's tables are the package's: regenerate them with
``python -m sdk.protocol.docs`` when a frame, command, event, failure key or limit changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdk.protocol import docs


def test_docs_protocol_md_matches_the_package() -> None:
    text = docs.DOC.read_text(encoding="utf-8")
    assert docs.render(text) == text, "docs/protocol.md is out of date: python -m sdk.protocol.docs"


def test_every_table_has_its_place_in_the_document() -> None:
    text = docs.DOC.read_text(encoding="utf-8")
    for name in docs.SECTIONS:
        assert f"<!-- generated: {name} -->\n" in text


def test_check_reports_drift_and_the_command_repairs_it(tmp_path: Path) -> None:
    page = tmp_path / "protocol.md"
    page.write_text("# Limits\n\n<!-- generated: limits -->\nstale\n<!-- end generated -->\n",
                    encoding="utf-8")
    assert docs.main(["--check", str(page)]) == 1
    assert docs.main([str(page)]) == 0
    assert "`MAX_NAME_LENGTH` | 255 |" in page.read_text(encoding="utf-8")
    assert docs.main(["--check", str(page)]) == 0


def test_an_unknown_block_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown generated block"):
        docs.render("<!-- generated: nope -->\n<!-- end generated -->")

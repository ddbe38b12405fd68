"""The README is a front door of about 200 lines, and every link in it and in docs/ resolves
inside the repository (a clone has nothing else)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def test_the_readme_is_a_front_door_that_starts_with_the_two_commands():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 220
    commands = re.search(r"```bash\n(.*?)```", text, re.S).group(1).splitlines()
    # -f: the clone holds the committed study, which a plain `dvc repro` finds up to date
    assert commands[0].split("#")[0].strip().endswith("dvc repro -f")
    assert commands[1].split("#")[0].strip().endswith("pytest")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_resolves_inside_the_repository(page):
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+://", target) or target.startswith("mailto:"):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        assert path.is_relative_to(ROOT), f"{page.name} links outside the repository: {target}"
        assert path.exists(), f"{page.name} links to {target}, which does not exist"
    assert "../shared" not in page.read_text()
    assert "SPEC §" not in page.read_text()

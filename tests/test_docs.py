"""Every file, config and page the README, MODEL_ZOO.md and docs/ name exists (commands included)."""

import re
from pathlib import Path

import pytest

from blendmask import model_zoo
from conftest import REPO_ROOT

PAGES = [REPO_ROOT / "README.md", REPO_ROOT / "MODEL_ZOO.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
# a repository path: not preceded by a path character (so centermask2/configs/... and blendmask/model_zoo/configs/...
# are not taken for ours), with an extension
REPO_PATH = re.compile(
    r"(?<![\w./:-])((?:configs|tools|benchmarks|demo|tests|docs|projects)/[\w./-]*\w\.(?:yaml|py|sh|md|png|json)"
    r"|train_net\.py|setup\.py|Makefile|MODEL_ZOO\.md)(?![\w/])"
)
CONFIG_DIR_PATH = re.compile(r"(?<![\w./:-])(configs/[\w/-]+/)(?![\w*])")
ZOO_NAME = re.compile(r"model_zoo\.(?:get_config_file|get_config|get|get_checkpoint_url)\(\s*\"([^\"]+)\"")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def code_of(text: str) -> str:
    """Fenced code blocks and inline code spans: where commands and paths are written."""
    blocks = re.findall(r"```[^\n]*\n(.*?)```", text, flags=re.S)
    inline = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    return "\n".join(blocks + inline)


def missing_in(page: Path) -> list:
    text = page.read_text()
    code = code_of(text)
    missing = []
    for path in set(REPO_PATH.findall(code)):
        if "*" not in path and not (REPO_ROOT / path).exists():
            missing.append(path)
    for folder in set(CONFIG_DIR_PATH.findall(code)):
        if not (REPO_ROOT / folder).is_dir():
            missing.append(folder)
    for name in set(ZOO_NAME.findall(code)):
        try:
            model_zoo.get_config_file(name)
        except FileNotFoundError:
            missing.append(f"model zoo config {name}")
    for target in set(LINK.findall(text)):
        if not target.startswith(("http://", "https://", "mailto:")) and not (page.parent / target).exists():
            missing.append(f"link {target}")
    return sorted(missing)


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(REPO_ROOT).as_posix() for p in PAGES])
def test_every_named_file_exists(page):
    assert missing_in(page) == []


def test_the_check_finds_missing_files(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "Run `python tools/no_such_tool.py --config-file configs/BlendMask/R_50_1x.yaml`.\n"
        "```bash\nblendmask-demo --config-file configs/Nope/x.yaml --input centermask2/configs/centermask/y.yaml\n```\n"
        "```python\nmodel_zoo.get(\"BlendMask/R50.yaml\")\n```\n[a page](nowhere.md) [web](https://example.org/x.md)\n"
    )
    assert missing_in(page) == ["configs/Nope/x.yaml", "link nowhere.md", "model zoo config BlendMask/R50.yaml",
                                "tools/no_such_tool.py"]


def test_readme_stays_short_and_links_every_docs_page():
    readme = (REPO_ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 300
    for page in (REPO_ROOT / "docs").glob("*.md"):
        if page.name != "README.md":
            assert f"docs/{page.name}" in readme, f"README does not link docs/{page.name}"

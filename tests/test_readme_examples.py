"""The README's examples run as written, both READMEs show the same code, and the documents'
relative links lead somewhere.

The README's ```python blocks share one namespace, top to bottom, as a reader running them in order
would; they run once per execution mode, in a temporary folder (they write checkpoints and exports).
"""
import importlib
import pathlib
import re
import sys
import traceback

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
README_CN = ROOT / "README_CN.md"
DOCUMENTS = sorted([README, README_CN, ROOT / "CHANGELOG.md", *(ROOT / "docs").rglob("*.md")])

FENCE = re.compile(r"^```([\w-]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
# "523 tests", "12 new tests", "523 passed", "523 个测试": counts go stale with every commit that adds a
# test. "10,000 test images" is a data set, not a count of tests.
TEST_COUNT = re.compile(r"\b\d[\d,]*\s+(?:(?:new|more|passing|failing|unit|slow)\s+)?tests?\b"
                        r"(?![ -](?:images?|set|split|samples?|data|accuracy))"
                        r"|\b\d[\d,]*\s+passed\b|\d+\s*个测试")


def code_blocks(path, language=None):
    """(language, code) of every fenced block of a Markdown file, in order."""
    blocks = [(match.group(1), match.group(2)) for match in FENCE.finditer(path.read_text(encoding="utf-8"))]
    return [block for block in blocks if language is None or block[0] == language]


def test_the_readme_has_python_examples():
    assert len(code_blocks(README, "python")) >= 5


def test_readme_python_examples_run(mode, tmp_path, monkeypatch):
    """Every ```python block of README.md, in order, in one namespace, in both execution modes.

    The blocks are written into one module file and imported, as a user's script would be: GRAPH
    mode reads a Cell's source and resolves its globals through the module that defines it.
    """
    blocks = [code for _, code in code_blocks(README, "python")]
    starts, lines = [], []
    for code in blocks:
        starts.append(len(lines) + 1)
        lines.extend(code.splitlines())
    module_name = f"readme_examples_{mode}"
    (tmp_path / f"{module_name}.py").write_text("\n".join(lines) + "\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        importlib.import_module(module_name)
    except Exception as error:
        # The module-level statement that was running: the first frame in the examples' file.
        line = next((frame.lineno for frame in traceback.extract_tb(error.__traceback__)
                     if frame.filename.endswith(f"{module_name}.py")), 1)
        index = max(i for i, start in enumerate(starts) if start <= line)
        raise AssertionError(f"README.md python block {index + 1} fails: {error!r}\n{blocks[index]}") from error
    finally:
        sys.modules.pop(module_name, None)
    # What the examples say they write.
    for name in ["slb.ckpt", "net.mindir", "net.slb", "net_packed.mindir", "net_packed.onnx"]:
        assert (tmp_path / name).is_file(), name


def test_the_chinese_readme_shows_the_same_code():
    english, chinese = code_blocks(README), code_blocks(README_CN)
    assert len(chinese) == len(english)
    for index, (block_en, block_cn) in enumerate(zip(english, chinese)):
        assert block_cn == block_en, f"code block {index + 1} differs between README.md and README_CN.md"


def test_both_readmes_have_the_same_sections_and_accuracy_table_markers():
    def headings(path):
        text = FENCE.sub("", path.read_text(encoding="utf-8"))
        return [line.split(" ", 1)[0] for line in text.splitlines() if re.match(r"#{1,6} ", line)]
    text_en = README.read_text(encoding="utf-8")
    text_cn = README_CN.read_text(encoding="utf-8")
    assert headings(README_CN) == headings(README)
    for text in (text_en, text_cn):
        begin = text.index("<!-- accuracy table: begin -->")
        end = text.index("<!-- accuracy table: end -->")
        assert begin < end
    def table(text):
        return text[text.index("<!-- accuracy table: begin -->"):text.index("<!-- accuracy table: end -->")]
    assert table(text_en).count("\n|") >= 5
    numbers = re.compile(r"[-+]?\d+\.\d+")
    assert numbers.findall(table(text_cn)) == numbers.findall(table(text_en)), "the two accuracy tables differ"


def test_the_readme_is_a_short_guide():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 320
    head = "\n".join(lines[:40])
    assert "make demo" in head and "make test" in head


def _anchor(heading):
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path):
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    return {_anchor(line.lstrip("#")) for line in text.splitlines() if re.match(r"#{1,6} ", line)}


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_relative_links_resolve(document):
    text = FENCE.sub("", document.read_text(encoding="utf-8"))
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue                                           # https:, mailto:
        path, _, anchor = target.partition("#")
        resolved = (document.parent / path).resolve() if path else document
        if not resolved.exists():
            broken.append(target)
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            broken.append(target)
    assert not broken, f"{document.relative_to(ROOT)}: links to nothing: {broken}"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_no_document_quotes_a_test_count(document):
    found = TEST_COUNT.findall(document.read_text(encoding="utf-8"))
    assert not found, f"{document.relative_to(ROOT)} quotes a test count: {found}"


def test_the_checks_catch_what_they_look_for():
    assert TEST_COUNT.search("passed 523 tests in 546 s")
    assert TEST_COUNT.search("12 tests")
    assert not TEST_COUNT.search("tests/test_start.py, both modes")
    assert TEST_COUNT.search("523 passed in 546 s")
    assert TEST_COUNT.search("通过 523 个测试")
    assert not TEST_COUNT.search("evaluated on all 10,000 test images")
    assert _anchor("Golden Stick compatibility") == "golden-stick-compatibility"
    assert _anchor("The optimizer's floor") == "the-optimizers-floor"

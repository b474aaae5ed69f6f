"""The docs and the code point at each other, and neither pointer may dangle.

- every backward function (`*_backward` in tinyvae/) is named in docs/*.md, and
  its docstring points to its section, `docs/<page>.md#<anchor>`;
- every such pointer anywhere in tinyvae/ (docstrings and comments) leads to an
  existing page and heading, and the section it leads to names the function
  and a test that checks it;
- every link between docs pages resolves, and the index links every page;
- every test named in the docs exists in tests/;
- the math is written so that GitHub renders it.

Each test collects all problems and fails once, with the whole list. No
tinyvae module is imported: the code is read with `ast` and regular expressions.
"""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PACKAGE = ROOT / "tinyvae"
TESTS = ROOT / "tests"

# Functions whose name ends in _backward but that are no backward pass.
NOT_BACKWARD = {
    "check_backward": "gradcheck's checker: it takes a forward and a backward and computes no gradient",
}

POINTER = re.compile(r"docs/([A-Za-z0-9_.-]+\.md)(?:#([A-Za-z0-9_-]+))?")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
LINK = re.compile(r"!?\[([^\]]*)\]\(\s*([^)\s]+)(?:\s+\"[^\"]*\")?\s*\)")
TEST_NAME = re.compile(r"\btest_\w+")


# ---- reading the docs -------------------------------------------------------------


def doc_pages():
    return sorted(DOCS.glob("*.md"))


def prose_lines(text):
    """(line number, line) outside fenced code blocks, inline code blanked out."""
    inside = False
    for number, line in enumerate(text.splitlines(), start=1):
        if FENCE.match(line):
            inside = not inside
            continue
        if not inside:
            yield number, INLINE_CODE.sub(" ", line)


def github_slug(heading):
    """The anchor GitHub gives a heading: rendered text, lowercased, punctuation
    other than '-' and '_' dropped, each space a hyphen."""
    text = INLINE_CODE.sub(lambda m: m.group(2), heading)
    text = LINK.sub(lambda m: m.group(1), text)
    text = re.sub(r"[*~]", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def headings(path):
    """[(level, slug, first line, last line)] of the page's sections, duplicates
    numbered as GitHub does (slug, slug-1, slug-2, ...)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found, seen, inside = [], {}, False
    for i, line in enumerate(lines):
        if FENCE.match(line):
            inside = not inside
            continue
        m = None if inside else HEADING.match(line)
        if m:
            slug = github_slug(m.group(2))
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            found.append([len(m.group(1)), slug if n == 0 else f"{slug}-{n}", i, len(lines)])
    for j, (level, _, _, _) in enumerate(found):  # a section ends at the next heading of its level or above
        for later in found[j + 1:]:
            if later[0] <= level:
                found[j][3] = later[2]
                break
    return [tuple(h) for h in found]


def anchors(path):
    return {slug for _, slug, _, _ in headings(path)}


def section_text(path, anchor):
    lines = path.read_text(encoding="utf-8").splitlines()
    for _, slug, start, end in headings(path):
        if slug == anchor:
            return "\n".join(lines[start:end])
    return None


def all_docs_text():
    return "\n".join(p.read_text(encoding="utf-8") for p in doc_pages())


# ---- reading the code --------------------------------------------------------------


def package_files():
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def rel(path):
    return path.relative_to(ROOT).as_posix()


def backward_functions():
    """[(file, line, name, docstring)] for every function named *_backward."""
    found = []
    for path in package_files():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.endswith("_backward"):
                found.append((rel(path), node.lineno, node.name, ast.get_docstring(node) or ""))
    return found


def defined_test_names():
    names = set()
    for path in TESTS.glob("test*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
                names.add(node.name)
    return names


def real_backwards():
    return [b for b in backward_functions() if b[2] not in NOT_BACKWARD]


def check_none(problems, what, how):
    assert not problems, f"{len(problems)} {what}:\n  " + "\n  ".join(problems) + f"\n{how}"


# ---- the checks -------------------------------------------------------------------------


def test_the_backward_functions_are_found():
    """Guards the guard: the scan sees the engine, and the exclusions still exist."""
    names = {name for _, _, name, _ in backward_functions()}
    assert {"affine_backward", "kl_normal_backward", "reparameterize_backward"} <= names, names
    stale = sorted(set(NOT_BACKWARD) - names)
    check_none(stale, "names in NOT_BACKWARD no longer exist in tinyvae/",
              "Remove them from NOT_BACKWARD in tests/test_docs.py.")


def test_every_backward_function_is_named_in_the_docs():
    text = all_docs_text()
    missing = [f"{file}:{line} {name}" for file, line, name, _ in real_backwards()
               if not re.search(rf"\b{re.escape(name)}\b", text)]
    check_none(missing, "backward functions are named nowhere in docs/*.md",
              "Derive each in docs/gradients.md (or the page it belongs to) and name it there.")


def test_every_backward_function_points_to_its_section():
    missing = [f"{file}:{line} {name}" for file, line, name, doc in real_backwards()
               if not any(m.group(2) for m in POINTER.finditer(doc))]
    check_none(missing, "backward functions have no docs/<page>.md#<anchor> pointer in their docstring",
              "Add a line such as 'Derivation: docs/gradients.md#the-dense-stack' to each docstring.")


def test_every_docs_pointer_in_the_code_resolves():
    broken = []
    for path in package_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            for m in POINTER.finditer(line):
                page, anchor = DOCS / m.group(1), m.group(2)
                where = f"{rel(path)}:{number} {m.group(0)}"
                if not page.is_file():
                    broken.append(f"{where}: no page docs/{m.group(1)}")
                elif anchor and anchor not in anchors(page):
                    broken.append(f"{where}: no heading with anchor #{anchor} "
                                  f"(the page has: {', '.join(sorted(anchors(page)))})")
    check_none(broken, "docs pointers in tinyvae/ lead nowhere",
              "Fix the pointer, or add the heading (its GitHub slug must equal the anchor).")


def test_each_backward_section_names_its_function_and_a_test():
    tests = defined_test_names()
    problems = []
    for file, line, name, doc in real_backwards():
        for m in POINTER.finditer(doc):
            page, anchor = DOCS / m.group(1), m.group(2)
            text = section_text(page, anchor) if (anchor and page.is_file()) else None
            if text is None:
                continue  # reported by the two tests above
            where = f"{file}:{line} {name} -> {m.group(0)}"
            if not re.search(rf"\b{re.escape(name)}\b", text):
                problems.append(f"{where}: the section does not name {name}")
            if not set(TEST_NAME.findall(text)) & tests:
                problems.append(f"{where}: the section names no test from tests/")
    check_none(problems, "sections do not say what implements and what checks them",
              "Each section ends with 'Implemented by: `..._backward`' and 'Checked by: `test_...`'.")


def test_links_between_docs_pages_resolve():
    broken = []
    for page in doc_pages():
        for number, line in prose_lines(page.read_text(encoding="utf-8")):
            for m in LINK.finditer(line):
                target = m.group(2)
                if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                    continue
                file_part, _, anchor = target.partition("#")
                dest = (page.parent / file_part).resolve() if file_part else page
                where = f"{rel(page)}:{number} ({target})"
                if not dest.exists():
                    broken.append(f"{where}: no file {file_part}")
                elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                    broken.append(f"{where}: no heading #{anchor} in {dest.name}")
    check_none(broken, "links in docs/ are broken",
              "Point them at an existing file and heading (GitHub slug of the heading).")


def test_the_index_links_every_page():
    index = (DOCS / "README.md").read_text(encoding="utf-8")
    linked = {m.group(2).partition("#")[0] for _, line in prose_lines(index) for m in LINK.finditer(line)}
    missing = [p.name for p in doc_pages() if p.name != "README.md" and p.name not in linked]
    check_none(missing, "docs pages are not linked from docs/README.md", "Add them to the reading order.")


def test_every_test_named_in_the_docs_exists():
    tests = defined_test_names()
    missing = []
    for page in doc_pages():
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1):
            for m in TEST_NAME.finditer(line):
                name = m.group(0)  # a test function, or a test module (test_model.py, `from test_vae import`)
                if name not in tests and not (TESTS / f"{name}.py").is_file():
                    missing.append(f"{rel(page)}:{number} {name}")
    check_none(missing, "tests named in docs/ do not exist in tests/",
              "Rename them in the docs to match tests/, or restore the tests.")


def test_math_is_written_the_way_github_renders_it():
    """Display math as '$$' lines with blank lines around; no macros; no backslash
    before ASCII punctuation (GitHub's Markdown eats it: '\\{' becomes '{'); no '_'
    right after punctuation unless a space follows ('}_q ... p_x' can be read as
    emphasis, github/markup#1575; '}_ q' renders the same); inline '$' paired
    within each paragraph."""
    problems = []
    escaped = re.compile(r"\\[!-/:-@\[-`{-~]")
    opener = re.compile(r"(?<=[^\w\s\\])_(?=\S)")
    for page in doc_pages():
        lines = page.read_text(encoding="utf-8").splitlines()
        prose = dict(prose_lines("\n".join(lines)))
        opening, paragraph_dollars, paragraph_start = None, 0, 1
        for number in range(1, len(lines) + 1):
            where = f"{rel(page)}:{number}"
            if number not in prose:
                continue
            line = prose[number]
            if "$$" in line:
                if line.strip() != "$$":
                    problems.append(f"{where}: put $$ on a line of its own")
                    continue
                if opening is None:
                    opening = number
                    if number > 1 and lines[number - 2].strip():
                        problems.append(f"{where}: a blank line must come before an opening $$")
                else:
                    opening = None
                    if number < len(lines) and lines[number].strip():
                        problems.append(f"{where}: a blank line must follow a closing $$")
                continue
            for macro in (r"\newcommand", r"\renewcommand", r"\def", r"\DeclareMathOperator"):
                if macro in line:
                    problems.append(f"{where}: {macro} is not supported; write the expression out")
            for m in opener.finditer(line):
                problems.append(f"{where}: '{line[max(m.start() - 8, 0):m.end() + 3].strip()}' "
                                "(write '_ ' after a brace or bracket, e.g. \\mathbb{E}_ q)")
            for m in escaped.finditer(line):
                problems.append(f"{where}: '{m.group(0)}' (Markdown strips the backslash; "
                                r"use \lbrace, \rbrace, a space, or a separate $$ block)")
            if opening is None:
                if not line.strip():
                    if paragraph_dollars % 2:
                        problems.append(f"{rel(page)}:{paragraph_start}: unpaired $ in this paragraph")
                    paragraph_dollars, paragraph_start = 0, number + 1
                else:
                    paragraph_dollars += line.count("$")
        if opening is not None:
            problems.append(f"{rel(page)}:{opening}: $$ block never closed")
        if paragraph_dollars % 2:
            problems.append(f"{rel(page)}:{paragraph_start}: unpaired $ in this paragraph")
    check_none(problems, "math constructs GitHub will not render as written", "")

#!/usr/bin/env python3
"""Checks the Markdown documentation: README.md, BENCHMARKS.md and docs/**/*.md.

1. Links: every relative link resolves to a file or directory of the repository, and every
   `#anchor` (in the same page or in another Markdown page) names a heading of that page, with
   the anchors GitHub generates. Absolute URLs are not fetched.
2. Included code: a fenced block right after `<!-- include: PATH -->` (or
   `<!-- include: PATH region=NAME -->`) must equal that file (or the lines between
   `region: NAME` and `endregion: NAME` markers in it). `--fix` rewrites such blocks.
3. The README's feature table: every row links to a section of the guide (`docs/...#...`), and
   has something runnable behind it: a link to an example or a test, or a guide section with a
   Rust block that `cargo test` compiles (pages included by examples/lib.rs) or that is included
   from a test file.
4. Line counts: `<!-- loc: PATH region=NAME -->N` states that the file (or region) has N lines of
   code (not blank, not `//` comments). `--fix` rewrites N.

Usage: scripts/check-docs.py [--fix] [--self-test]
Exit status 0 when everything holds; otherwise each problem is printed as FILE:LINE: message.
"""

import argparse
import pathlib
import re
import sys
import tempfile
import unicodedata

ROOT = pathlib.Path(__file__).resolve().parent.parent

# CommonMark: up to three spaces of indent; a backtick fence's info string has no backtick.
FENCE = re.compile(r"^( {0,3})(`{3,}(?=[^`]*$)|~{3,})(.*)$")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")
INCLUDE = re.compile(r"^<!--\s*include:\s*(\S+)(?:\s+region=(\S+))?\s*-->\s*$")
LOC = re.compile(r"<!--\s*loc:\s*(\S+)(?:\s+region=(\S+))?\s*-->(\d+)")
DOCTESTED = re.compile(r'include_str!\("\.\./([^"]+\.md)"\)')


def markdown_files(root):
    files = [root / "README.md", root / "BENCHMARKS.md"]
    files += sorted((root / "docs").rglob("*.md")) if (root / "docs").is_dir() else []
    return [f for f in files if f.is_file()]


def split_lines(text):
    """Yields (line_number, line, in_code) for every line; fences themselves count as code."""
    fence = None
    for number, line in enumerate(text.splitlines(), start=1):
        match = FENCE.match(line)
        if fence is None and match:
            fence = match.group(2)[0] * len(match.group(2))
            yield number, line, True
        elif fence is not None:
            if match and match.group(2).startswith(fence) and not match.group(3).strip():
                fence = None
            yield number, line, True
        else:
            yield number, line, False


def slug(heading):
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = CODE_SPAN.sub(lambda m: m.group(2), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # links keep their text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    out = []
    for ch in text.lower():
        category = unicodedata.category(ch)
        if ch in " -_" or category[0] in "LN":
            out.append("-" if ch == " " else ch)
    return "".join(out)


def anchors_of(path, cache):
    if path not in cache:
        seen = {}
        anchors = set()
        for _, line, in_code in split_lines(path.read_text(encoding="utf-8")):
            if in_code:
                continue
            anchors.update(HTML_ANCHOR.findall(line))
            match = HEADING.match(line)
            if not match:
                continue
            base = slug(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            anchors.add(base if count == 0 else f"{base}-{count}")
        cache[path] = anchors
    return cache[path]


def links_of(text):
    """Yields (line_number, target) for every link outside code."""
    for number, line, in_code in split_lines(text):
        if in_code:
            continue
        definition = REFERENCE_DEF.match(line)
        if definition:
            yield number, definition.group(1)
            continue
        visible = CODE_SPAN.sub(lambda m: " " * len(m.group(0)), line)
        for match in INLINE_LINK.finditer(visible):
            yield number, match.group(1)


def check_links(root, files):
    problems = []
    cache = {}
    for path in files:
        rel = path.relative_to(root)
        for number, target in links_of(path.read_text(encoding="utf-8")):
            if not target or re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target):
                continue  # absolute URL, mailto:, ...
            file_part, _, anchor = target.partition("#")
            if file_part.startswith("/"):
                problems.append(f"{rel}:{number}: `{target}`: use a relative link")
                continue
            dest = (path.parent / file_part).resolve() if file_part else path
            try:
                dest.relative_to(root)
            except ValueError:
                problems.append(f"{rel}:{number}: `{target}` leaves the repository")
                continue
            if not dest.exists():
                problems.append(f"{rel}:{number}: `{target}`: no such file or directory")
                continue
            if anchor and dest.suffix == ".md":
                if anchor not in anchors_of(dest, cache):
                    known = ", ".join(sorted(anchors_of(dest, cache))) or "none"
                    problems.append(
                        f"{rel}:{number}: `{target}`: no heading with anchor `#{anchor}` in "
                        f"{dest.relative_to(root)} (anchors: {known})"
                    )
    return problems


def region_text(source, region, where):
    lines = source.splitlines()
    begin = [i for i, l in enumerate(lines) if re.search(rf"\bregion: {re.escape(region)}\b", l)]
    end = [i for i, l in enumerate(lines) if re.search(rf"\bendregion: {re.escape(region)}\b", l)]
    if len(begin) != 1 or len(end) != 1 or end[0] <= begin[0]:
        raise ValueError(f"{where}: region `{region}` needs one `region:` and one later `endregion:` line")
    # Markers of regions nested inside this one are not part of the text.
    body = [l for l in lines[begin[0] + 1 : end[0]] if not re.match(r"^\s*//\s*(end)?region:", l)]
    indent = min((len(l) - len(l.lstrip()) for l in body if l.strip()), default=0)
    return "\n".join(l[indent:] for l in body) + "\n"


def check_includes(root, files, fix, quiet=False):
    problems = []
    for path in files:
        rel = path.relative_to(root)
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        out, i, changed = [], 0, False
        while i < len(lines):
            line = lines[i]
            out.append(line)
            match = INCLUDE.match(line.strip())
            i += 1
            if not match:
                continue
            source_path = (path.parent / match.group(1)).resolve()
            if not source_path.is_file():
                problems.append(f"{rel}:{i}: include `{match.group(1)}`: no such file")
                continue
            try:
                source = source_path.read_text(encoding="utf-8")
                expected = region_text(source, match.group(2), match.group(1)) if match.group(2) else source
            except ValueError as error:
                problems.append(f"{rel}:{i}: {error}")
                continue
            if i >= len(lines) or not FENCE.match(lines[i]):
                problems.append(f"{rel}:{i}: include `{match.group(1)}` must be followed by a fenced block")
                continue
            opening = lines[i]
            fence = FENCE.match(opening).group(2)
            close = i + 1
            while close < len(lines) and not lines[close].strip().startswith(fence):
                close += 1
            if close >= len(lines):
                problems.append(f"{rel}:{i + 1}: unclosed code block")
                break
            actual = "".join(lines[i + 1 : close])
            out.append(opening)
            if actual != expected:
                if fix:
                    changed = True
                    out.append(expected)
                else:
                    problems.append(
                        f"{rel}:{i + 1}: the block differs from `{match.group(1)}`"
                        + (f" region `{match.group(2)}`" if match.group(2) else "")
                        + " (run scripts/check-docs.py --fix)"
                    )
                    out.append(actual)
            else:
                out.append(actual)
            out.append(lines[close])
            i = close + 1
        if changed:
            path.write_text("".join(out), encoding="utf-8")
            if not quiet:
                print(f"updated {rel}")
    return problems


def doctested_pages(root):
    """The Markdown pages whose Rust blocks `cargo test` compiles (included by examples/lib.rs)."""
    lib = root / "examples" / "lib.rs"
    if not lib.is_file():
        return set()
    return {(root / m).resolve() for m in DOCTESTED.findall(lib.read_text(encoding="utf-8"))}


def section(path, anchor):
    """The lines of the section whose heading has `anchor`, up to the next heading as high."""
    lines = list(split_lines(path.read_text(encoding="utf-8")))
    seen, start, level = {}, None, 0
    for index, (_, line, in_code) in enumerate(lines):
        match = None if in_code else HEADING.match(line)
        if not match:
            continue
        if start is not None and len(match.group(1)) <= level:
            return [l for _, l, _ in lines[start:index]]
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        if start is None and (base if count == 0 else f"{base}-{count}") == anchor:
            start, level = index, len(match.group(1))
    return [l for _, l, _ in lines[start:]] if start is not None else []


def runnable(root, readme, target, doctested):
    file_part, _, anchor = target.partition("#")
    dest = (readme.parent / file_part).resolve()
    try:
        top = dest.relative_to(root).parts[0]
    except (ValueError, IndexError):
        return False
    # Examples and tests run in CI; monitoring/ holds the alert rules' promtool tests.
    if top in ("examples", "tests", "ui-tests", "monitoring") and dest.exists():
        return True
    if dest.suffix != ".md" or not anchor or not dest.is_file():
        return False
    body = section(dest, anchor)
    tested_block = dest in doctested and any(re.match(r"^ {0,3}```rust\s*$", l) for l in body)
    return tested_block or any(INCLUDE.match(l.strip()) for l in body)


def check_feature_table(root):
    readme = root / "README.md"
    if not readme.is_file():
        return []
    doctested = doctested_pages(root)
    problems = []
    in_features = False
    rows = 0
    for number, line, in_code in split_lines(readme.read_text(encoding="utf-8")):
        if in_code:
            continue
        heading = HEADING.match(line)
        if heading:
            in_features = heading.group(2).strip().lower() == "features"
            continue
        if not in_features or not line.startswith("|") or re.match(r"^\|[\s:|-]+\|$", line):
            continue
        rows += 1
        if rows == 1:
            continue  # the header row
        targets = [t for _, t in links_of(line)]
        if not any(t.startswith("docs/") and "#" in t for t in targets):
            problems.append(f"README.md:{number}: feature row links to no guide section (docs/PAGE.md#section)")
        elif not any(runnable(root, readme, t, doctested) for t in targets):
            problems.append(
                f"README.md:{number}: feature row has nothing runnable behind it: link an example "
                "or a test, or a guide section with a tested Rust block"
            )
    if rows == 0:
        problems.append("README.md: no feature table under a `## Features` heading")
    return problems


def code_lines(text):
    return sum(1 for l in text.splitlines() if l.strip() and not l.strip().startswith("//"))


def check_line_counts(root, files, fix):
    problems = []
    for path in files:
        rel = path.relative_to(root)
        text = path.read_text(encoding="utf-8")

        def replace(match, number=None):
            source_path = (path.parent / match.group(1)).resolve()
            where = f"{rel}: loc `{match.group(1)}`"
            if not source_path.is_file():
                problems.append(f"{where}: no such file")
                return match.group(0)
            source = source_path.read_text(encoding="utf-8")
            try:
                body = region_text(source, match.group(2), match.group(1)) if match.group(2) else source
            except ValueError as error:
                problems.append(f"{rel}: {error}")
                return match.group(0)
            actual = code_lines(body)
            if actual != int(match.group(3)):
                if not fix:
                    problems.append(f"{where}: says {match.group(3)} lines of code, counts {actual} (run scripts/check-docs.py --fix)")
                    return match.group(0)
                return match.group(0)[: -len(match.group(3))] + str(actual)
            return match.group(0)

        updated = LOC.sub(replace, text)
        if fix and updated != text:
            path.write_text(updated, encoding="utf-8")
    return problems


def run(root, fix=False, quiet=False):
    files = markdown_files(root)
    problems = check_includes(root, files, fix, quiet)
    problems += check_line_counts(root, files, fix)
    problems += check_links(root, files)
    problems += check_feature_table(root)
    return files, problems


def self_test():
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        (root / "docs").mkdir()
        (root / "src.rs").write_text("fn a() {}\n// region: two\n    let x = 2;\n// endregion: two\n")
        (root / "examples").mkdir()
        (root / "examples" / "lib.rs").write_text('#[doc = include_str!("../docs/a.md")]\n')
        (root / "examples" / "demo.rs").write_text("fn main() {}\n")
        (root / "README.md").write_text(
            "# Title\n\n## Features\n\n| feature | where |\n|---|---|\n"
            "| good | [guide](docs/a.md#the-scope-and-task) |\n| bad | [code](src.rs) |\n"
            "| untested | [guide](docs/a.md#dup) |\n| example | [guide](docs/a.md#a), [demo](examples/demo.rs) |\n\n"
            "[ok](docs/a.md) [missing](docs/nope.md) [anchor](docs/a.md#nowhere) [self](#title)\n"
            "`[in code](docs/nope.md)`\n\n```\n[in fence](docs/nope.md)\n```\n"
            "``` `not a fence` ``` [after](docs/gone.md)\n"
        )
        (root / "docs" / "a.md").write_text(
            "# A\n\n## The `Scope` and task\n\n```rust\nfn f() {}\n```\n\n## Dup\n\n## Dup\n\n"
            "[d](#dup-1) [e](../src.rs) [f](#dup-2) <!-- loc: ../src.rs -->3\n\n"
            "<!-- include: ../src.rs region=two -->\n```rust\nlet x = 3;\n```\n"
        )
        _, problems = run(root)
        text = "\n".join(problems)
        expected = ["docs/nope.md`: no such file", "docs/gone.md`: no such file", "#nowhere", "feature row links to no guide",
                    "#dup-2", "differs from `../src.rs` region `two`",
                    "README.md:9: feature row has nothing runnable", "says 3 lines of code, counts 2"]
        for needle in expected:
            assert needle in text, f"self-test: expected a problem mentioning {needle!r}:\n{text}"
        assert len(problems) == len(expected), f"self-test: unexpected problems:\n{text}"
        run(root, fix=True, quiet=True)
        _, problems = run(root)
        assert len(problems) == len(expected) - 2, f"self-test: --fix should repair the include and the count:\n{problems}"
        assert "```rust\nlet x = 2;\n```" in (root / "docs" / "a.md").read_text()
        assert "<!-- loc: ../src.rs -->2" in (root / "docs" / "a.md").read_text()
    print("check-docs self-test: ok")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fix", action="store_true", help="rewrite included code blocks")
    parser.add_argument("--self-test", action="store_true", help="check the checker on fixtures")
    args = parser.parse_args()
    if args.self_test:
        self_test()
        return 0
    files, problems = run(ROOT, args.fix)
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"check-docs: {len(files)} files, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

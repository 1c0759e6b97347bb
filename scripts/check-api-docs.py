#!/usr/bin/env python3
"""Checks the rustdoc headings of the go-go-scope crate's public API.

Tokio's convention, kept here: a user reading an async method's docs learns whether it may sit
in a `select!` (what dropping its future mid-way does), and a user reading a fallible one
learns which errors come back and when. So, in scope/src (outside `__private`, the macros'
support module in `macro_support.rs`):

1. every `pub async fn`, and every `pub fn` that returns `impl Future`, has a
   `# Cancel safety` section in its doc comment;
2. every `pub fn` (async or not) that returns a `Result` has an `# Errors` section;
3. every public type that is itself awaited or streamed (it implements `Future`, `IntoFuture`
   or `Stream`) has a `# Cancel safety` section in its own doc comment.

`pub(crate)` and narrower items are not public API and are not checked; neither is code in
`#[cfg(test)]` modules. Files in NOT_YET_AUDITED are skipped (each entry is a file whose
rewrite is under way elsewhere); the list is meant to shrink to nothing, and a listed file
that already passes is pointed out.

Usage: scripts/check-api-docs.py [--self-test]
Exit status 0 when every checked function has its sections; otherwise each gap is printed as
FILE:LINE: message.
"""

import argparse
import pathlib
import re
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCE = pathlib.Path("scope/src")

# Files skipped for now, relative to the repository root. Remove an entry once its file
# passes (the checker says when it does).
NOT_YET_AUDITED = [
]

PUBLIC_FN = re.compile(r"^\s*pub\s+(?:const\s+)?(async\s+)?(?:unsafe\s+)?fn\s+(\w+)")
CFG_TEST = re.compile(r"^\s*#\[cfg\((?:all\()?\s*test\b")
RETURNS_RESULT = re.compile(r"->\s*(?:[\w:]+::)?Result\s*<")
AWAITABLE_IMPL = re.compile(r"^\s*impl\b.*?\b(?:[\w:]+::)?(Future|IntoFuture|Stream)\s+for\s+(\w+)")
RETURNS_FUTURE = re.compile(r"->\s*impl\s+(?:[\w:]+::)?(?:Into)?Future\b")
CANCEL_SAFETY = re.compile(r"^\s*///\s*#\s+Cancel safety\s*$")
ERRORS = re.compile(r"^\s*///\s*#\s+Errors\s*$")


def doc_above(lines, index):
    """The doc comment lines above line `index`, across attributes (also multi-line ones)."""
    doc = []
    j = index - 1
    while j >= 0:
        text = lines[j].strip()
        if text.startswith("///"):
            doc.append(lines[j])
        elif text.startswith("#[") or text.startswith("#!["):
            pass
        elif text.endswith("]") and not text.startswith("//"):
            # The last line of a multi-line attribute: skip up to its `#[`.
            while j > 0 and not lines[j].strip().startswith("#["):
                j -= 1
        elif text.startswith("//"):
            pass  # a plain comment between the doc and the item
        else:
            break
        j -= 1
    doc.reverse()
    return doc


def signature(lines, index):
    """The function's signature: its lines up to the body's `{` (or a `;`), joined."""
    parts = []
    for line in lines[index : index + 40]:
        code = line.split("//", 1)[0]
        cut = min((p for p in (code.find("{"), code.find(";")) if p >= 0), default=-1)
        if cut >= 0:
            parts.append(code[:cut])
            break
        parts.append(code)
    text = " ".join(part.strip() for part in parts)
    # Only the return type counts, not the `where` clause or the arguments.
    return text.split(" where ", 1)[0]


def test_module_lines(lines):
    """Indexes of the lines inside `#[cfg(test)]` items (brace-counted)."""
    inside = set()
    i = 0
    while i < len(lines):
        if CFG_TEST.match(lines[i]):
            depth = 0
            opened = False
            j = i + 1
            while j < len(lines):
                code = lines[j].split("//", 1)[0]
                depth += code.count("{") - code.count("}")
                opened = opened or "{" in code
                inside.add(j)
                if opened and depth <= 0:
                    break
                if not opened and code.rstrip().endswith(";"):
                    break
                j += 1
            i = j
        i += 1
    return inside


def check_file(path, shown):
    """The gaps of one file, as `shown:LINE: message` strings."""
    lines = path.read_text(encoding="utf-8").split("\n")
    skipped = test_module_lines(lines)
    problems = []
    for i, line in enumerate(lines):
        match = PUBLIC_FN.match(line)
        if not match or i in skipped:
            continue
        name = match.group(2)
        doc = doc_above(lines, i)
        sig = signature(lines, i)
        returns_future = bool(match.group(1)) or bool(RETURNS_FUTURE.search(sig))
        if returns_future and not any(CANCEL_SAFETY.match(d) for d in doc):
            problems.append(
                f"{shown}:{i + 1}: `{name}` returns a future but its docs have no "
                "`# Cancel safety` section (say what dropping the future mid-way does)"
            )
        if RETURNS_RESULT.search(sig) and not any(ERRORS.match(d) for d in doc):
            problems.append(
                f"{shown}:{i + 1}: `{name}` returns a Result but its docs have no `# Errors` "
                "section (say which errors come back, and when)"
            )
    for i, line in enumerate(lines):
        match = AWAITABLE_IMPL.match(line)
        if not match or i in skipped:
            continue
        trait, name = match.groups()
        declared = re.compile(rf"^\s*pub\s+(?:struct|enum)\s+{name}\b")
        for j, candidate in enumerate(lines):
            if declared.match(candidate) and j not in skipped:
                doc = doc_above(lines, j)
                if not any(CANCEL_SAFETY.match(d) for d in doc):
                    problems.append(
                        f"{shown}:{j + 1}: `{name}` implements `{trait}` but its docs have no "
                        "`# Cancel safety` section (say what dropping it mid-way does)"
                    )
                break
    return problems


def run(root, skip):
    """Checks every source file under `root`/scope/src; returns (files checked, problems,
    skipped files that already pass)."""
    checked = 0
    problems = []
    passing_but_skipped = []
    for path in sorted((root / SOURCE).rglob("*.rs")):
        relative = path.relative_to(root).as_posix()
        # The macros' support module (mounted as `__private`): not an API.
        if "__private" in relative or relative.endswith("/macro_support.rs"):
            continue
        found = check_file(path, relative)
        if relative in skip:
            if not found:
                passing_but_skipped.append(relative)
            continue
        checked += 1
        problems += found
    return checked, problems, passing_but_skipped


def self_test():
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        src = root / SOURCE
        (src / "sync").mkdir(parents=True)
        (src / "sync" / "good.rs").write_text(
            "/// Waits.\n///\n/// # Cancel safety\n/// Cancel safe.\n///\n/// # Errors\n"
            "/// When closed.\n#[must_use]\npub async fn good() -> Result<(), Error> {}\n"
            "/// A call.\n///\n/// # Cancel safety\n/// Safe.\n"
            "pub fn call(&self) -> impl Future<Output = u8> + Send {}\n"
            "/// Infallible.\npub fn plain(x: u8) -> u8 where Result<u8, ()>: Sized {}\n"
            "pub(crate) async fn internal() -> Result<(), Error> {}\n"
            "/// Multi-line attribute.\n///\n/// # Errors\n/// Never.\n#[cfg_attr(\n"
            "    docsrs,\n    doc(cfg(feature = \"x\"))\n)]\npub fn attributed()\n"
            "    -> std::io::Result<u8>\n{}\n"
            "#[cfg(test)]\nmod tests {\n    pub async fn helper() -> Result<(), ()> {}\n}\n"
            "/// A handle.\n///\n/// # Cancel safety\n/// Safe.\npub struct Handle<T>(T);\n"
            "impl<T> Future for Handle<T> {}\nstruct Private;\nimpl Future for Private {}\n"
            "impl<S: Stream> FusedStream for Handle<S> {}\n"
        )
        (src / "sync" / "bad.rs").write_text(
            "/// No sections.\npub async fn waits() -> Result<(), Error> {}\n"
            "/// Returns a future.\npub fn later(&self) -> impl Future<Output = ()> {}\n"
            "/// Fallible.\n///\n/// # Cancel safety\n/// Not async, so this does not count.\n"
            "pub fn parse(\n    text: &str,\n) -> Result<u8, ParseError> {}\n"
            "/// Awaited.\n#[must_use]\npub struct Sel<'a, R> {}\n"
            "impl<'a, R: 'a> IntoFuture for Sel<'a, R> {}\n"
            "/// Streamed.\npub struct Items<S>(S);\nimpl<S: Stream> futures::Stream for Items<S> {}\n"
        )
        (src / "skipped.rs").write_text("pub async fn unchecked() {}\n")
        (src / "fixed.rs").write_text("/// Fine.\npub fn fine() {}\n")
        (src / "__private.rs").write_text("pub async fn generated() {}\n")
        checked, problems, stale = run(
            root, ["scope/src/skipped.rs", "scope/src/fixed.rs"]
        )
        text = "\n".join(problems)
        expected = [
            "scope/src/sync/bad.rs:2: `waits` returns a future",
            "scope/src/sync/bad.rs:2: `waits` returns a Result",
            "scope/src/sync/bad.rs:4: `later` returns a future",
            "scope/src/sync/bad.rs:9: `parse` returns a Result",
            "scope/src/sync/bad.rs:14: `Sel` implements `IntoFuture`",
            "scope/src/sync/bad.rs:17: `Items` implements `Stream`",
        ]
        for needle in expected:
            assert needle in text, f"self-test: expected a problem starting {needle!r}:\n{text}"
        assert len(problems) == len(expected), f"self-test: unexpected problems:\n{text}"
        assert checked == 2, f"self-test: checked {checked} files, expected 2"
        assert stale == ["scope/src/fixed.rs"], f"self-test: stale skips {stale}"
    print("check-api-docs: self-test passed")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--self-test", action="store_true", help="check the checker on fixtures")
    args = parser.parse_args()
    if args.self_test:
        self_test()
        return 0
    checked, problems, stale = run(ROOT, NOT_YET_AUDITED)
    for problem in problems:
        print(problem, file=sys.stderr)
    for relative in stale:
        print(f"check-api-docs: {relative} passes now; remove it from NOT_YET_AUDITED")
    missing = [p for p in NOT_YET_AUDITED if not (ROOT / p).is_file()]
    for relative in missing:
        print(f"check-api-docs: {relative} is in NOT_YET_AUDITED but does not exist; remove it")
    skipped = len(NOT_YET_AUDITED) - len(missing)
    print(
        f"check-api-docs: {checked} files checked ({skipped} not yet audited, skipped), "
        f"{len(problems)} problem(s)"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

"""Property: whatever the layout of devspace.yaml (indent width, dash style, comments, blank
lines, sections before and after), ``add_sync`` only adds lines, and the result loads as the old
entries plus the new one."""

from __future__ import annotations

import difflib
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from podsync.config import add_sync, load_config


@st.composite
def layouts(draw: st.DrawFn) -> str:
    m = draw(st.sampled_from([2, 3, 4]))  # mapping indent
    d = draw(st.sampled_from([0, m]))  # dash offset under a key
    ind, dash = " " * m, " " * d
    out: list[str] = []
    if draw(st.booleans()):
        out.append("# devspace project\n")
    out.append(f"version: v1beta9\nimages:\n{ind}web:\n{ind * 2}image: acme/web\n")
    if draw(st.booleans()):
        out.append(
            f"deployments:\n{dash}- name: web\n{dash}  component:\n"
            f"{dash}  {ind}containers:\n{dash}  {ind}{dash}- image: acme/web\n"
        )
    dev = draw(st.sampled_from(["absent", "ports-only", "sync"]))
    if dev != "absent":
        out.append("dev:\n")
        if draw(st.booleans()) or dev == "ports-only":
            out.append(f"{ind}ports:\n{ind}{dash}- imageName: web\n")
        if dev == "sync":
            out.append(f"{ind}sync:\n")
            for i in range(draw(st.integers(1, 3))):
                out.append(f"{ind}{dash}- imageName: web   # entry {i}\n")
                out.append(f"{ind}{dash}  containerPath: /srv/{i}\n")
                if draw(st.booleans()):
                    out.append(f"{ind}{dash}  excludePaths:\n{ind}{dash}  {dash}- logs/\n")
                out.append(draw(st.sampled_from(["", "\n", f"{ind}# note\n", "\n# x\n"])))
            if draw(st.booleans()):
                out.append(f"{ind}open:\n{ind}{dash}- url: http://localhost\n")
    out.append(draw(st.sampled_from(["", "profiles: []\n", "hooks:\n- command: echo\n"])))
    out.append(draw(st.sampled_from(["", "# the end\n", "\n\n"])))
    return "".join(out)


@settings(max_examples=150, deadline=None)
@given(
    text=layouts(), excludes=st.lists(st.sampled_from(["a/", "*.o", "!keep", "x y"]), max_size=3)
)
def test_add_sync_only_adds_lines(text: str, excludes: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "src").mkdir()
        path = root / "devspace.yaml"
        path.write_text(text)
        before = load_config(path)
        add_sync(path, "src", "/app/src", excludes, None)
        after_text = path.read_text()
        diff = list(difflib.ndiff(text.splitlines(True), after_text.splitlines(True)))
        assert [line for line in diff if line.startswith("- ")] == []
        after = load_config(path)
        assert after.sync[:-1] == before.sync
        new = after.sync[-1]
        assert (new.image_name, new.local_sub_path, new.container_path) == (
            "web",
            "src",
            "/app/src",
        )
        assert new.exclude_paths == excludes

"""The lone-clone check (``sitehook/lone_clone.py``) fails a session that reads beside its checkout,
in the test process or in a Python subprocess, and passes one that reads only allowed places."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import lone_clone  # put on sys.path by conftest.py

TESTS = Path(__file__).resolve().parent


def test_rule_names_only_paths_beside_the_checkout(tmp_path):
    parent = tmp_path / "parent"
    checkout = parent / "clip4idc"
    (checkout / "tests").mkdir(parents=True)
    (parent / "shared").mkdir()
    (parent / "shared" / "tiny_a.pt").write_text("x")
    (checkout / "link.pt").symlink_to(parent / "shared" / "tiny_a.pt")
    rule = lone_clone.Rule(checkout, allowed=[str(parent / "venv")])
    assert not rule.off_reason
    assert rule.beside(str(parent / "shared" / "tiny_a.pt"))
    assert rule.beside(str(checkout / ".." / "shared"))
    assert rule.beside(str(checkout / "link.pt"))  # a symlink inside that points beside
    assert rule.beside(str(parent))  # listing the parent shows what is beside
    assert not rule.beside(str(checkout / "tests" / "conftest.py"))
    assert not rule.beside(str(parent / ".cache" / "matplotlib"))  # hidden: per-user caches
    assert not rule.beside(str(parent / "venv" / "lib" / "x.py"))
    assert not rule.beside("/usr/lib/x.so")
    assert not rule.beside(str(tmp_path / "elsewhere"))
    assert lone_clone.Rule(checkout, allowed=[str(tmp_path)]).beside(str(parent / "shared"))  # holds all
    assert lone_clone.Rule(tmp_path / "nothing_above" / ".." / "x").parent == str(tmp_path.resolve())
    assert lone_clone.Rule("/clip4idc").off_reason  # the parent is the root: nothing is "beside"


def _lone_session(tmp_path: Path, test_source: str) -> subprocess.CompletedProcess:
    """Run pytest in ``tmp_path/parent/checkout`` (this conftest and hook, one test file) with
    ``shared``, ``.cache`` and the temp folder ``tmp`` beside it."""
    checkout = tmp_path / "parent" / "checkout"
    (checkout / "tests").mkdir(parents=True)
    shared = tmp_path / "parent" / "shared"
    shared.mkdir()
    for name in ("a.txt", "b.txt"):
        (shared / name).write_text(name)
    (tmp_path / "parent" / ".cache").mkdir()
    (checkout / "pytest.ini").write_text("[pytest]\n")
    shutil.copy(TESTS / "conftest.py", checkout / "tests" / "conftest.py")
    shutil.copytree(
        TESTS / "sitehook", checkout / "tests" / "sitehook", ignore=shutil.ignore_patterns("__pycache__")
    )
    (checkout / "tests" / "test_reads.py").write_text(textwrap.dedent(test_source))
    (tmp_path / "parent" / "tmp").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLIP4IDC_") and k != "PYTHONPATH"}
    env["TMPDIR"] = str(tmp_path / "parent" / "tmp")  # a temp folder beside the checkout stays allowed
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "tests/test_reads.py"],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_reading_beside_the_checkout_fails_the_session(tmp_path):
    proc = _lone_session(
        tmp_path,
        """
        import subprocess, sys
        from pathlib import Path

        SHARED = Path(__file__).resolve().parents[2] / "shared"

        def test_reads_in_process():
            assert (SHARED / "a.txt").read_text() == "a.txt"

        def test_reads_in_a_subprocess():
            code = f"print(open({str(SHARED / 'b.txt')!r}).read())"
            assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout == "b.txt\\n"
        """,
    )
    out = proc.stdout + proc.stderr
    assert "2 passed" in out, out  # the tests themselves pass ...
    assert proc.returncode == 1, out  # ... and the session fails
    assert "lone-clone check FAILED" in out, out
    shared = tmp_path.resolve() / "parent" / "shared"
    assert str(shared / "a.txt") in out and str(shared / "b.txt") in out, out


def test_reading_only_allowed_places_passes(tmp_path):
    proc = _lone_session(
        tmp_path,
        """
        import subprocess, sys, tempfile
        from pathlib import Path

        CHECKOUT = Path(__file__).resolve().parents[1]

        def test_allowed_reads():
            assert "[pytest]" in (CHECKOUT / "pytest.ini").read_text()
            (CHECKOUT.parent / ".cache" / "c.txt").write_text("cache")
            with tempfile.TemporaryFile() as f:
                f.write(b"temp")
            code = f"print(open({str(CHECKOUT / 'pytest.ini')!r}).read())"
            assert "[pytest]" in subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
        """,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "1 passed" in out and "lone-clone check FAILED" not in out, out
    assert f"no test may read beside {tmp_path.resolve() / 'parent' / 'checkout'}" in out, out


def test_subprocess_hook_keeps_the_sitecustomize_it_shadows(tmp_path):
    """A subprocess gets the hook and still runs the interpreter's own ``sitecustomize``."""
    other = tmp_path / "other_site"
    other.mkdir()
    marker = tmp_path / "marker.txt"
    (other / "sitecustomize.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    checkout = tmp_path / "parent" / "checkout"
    checkout.mkdir(parents=True)
    (tmp_path / "parent" / "data.txt").write_text("x")
    log = tmp_path / "beside.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLIP4IDC_")}
    env.update(
        PYTHONPATH=os.pathsep.join([str(TESTS / "sitehook"), str(other)]),
        CLIP4IDC_LONE_CLONE_ROOT=str(checkout),
        CLIP4IDC_LONE_CLONE_LOG=str(log),
    )
    code = "open('../data.txt').read(); open('inside.txt', 'w').write('y')"
    subprocess.run([sys.executable, "-c", code], cwd=checkout, env=env, check=True, timeout=60)
    assert marker.read_text() == "ran"
    found = [os.path.realpath(p) for p in lone_clone.read_log(str(log))]
    assert found == [str(tmp_path.resolve() / "parent" / "data.txt")]

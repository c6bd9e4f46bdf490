"""dq_edge.outputs: overlap checks, marker-only replacing, the lock race, stale temps, umask modes."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dq_edge.atomic import atomic_dir, atomic_path
from dq_edge.cli.main import main
from dq_edge.errors import OutputBusyError, OutputExistsError, OutputNotOursError, OutputOverlapError
from dq_edge.outputs import MARKER_NAME, check_no_overlap, claim_output, is_marked, prepare_cache_folder, remove_stale_temps

REPO = Path(__file__).resolve().parent.parent


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _tree(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize(
    "out, relation",
    [("model", "is"), ("model/sub", "is inside"), (".", "contains"), ("link", "is"), ("link/x", "is inside")],
)
def test_overlap_with_an_input_is_refused(tmp_path, out, relation):
    (tmp_path / "model").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "model", target_is_directory=True)
    with pytest.raises(OutputOverlapError, match=relation):
        check_no_overlap(tmp_path / out, [tmp_path / "model"])
    check_no_overlap(tmp_path / "elsewhere", [tmp_path / "model", None])  # siblings are fine


def test_replacing_needs_our_marker_and_never_takes_a_file(tmp_path):
    user = tmp_path / "user"
    user.mkdir()
    (user / "photo.png").write_bytes(b"precious")
    with pytest.raises(OutputExistsError, match="not empty"):
        with claim_output(user, "test"):
            pass
    with pytest.raises(OutputNotOursError):
        with claim_output(user, "test", overwrite=True):
            pass
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputExistsError, match="not a folder"):
        with claim_output(tmp_path / "file", "test", overwrite=True):
            pass
    assert (user / "photo.png").read_bytes() == b"precious" and (tmp_path / "file").read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "user"]  # no lock or temp left


def test_overwrite_replaces_a_marked_folder_only_when_complete(tmp_path):
    out = tmp_path / "out"
    with atomic_dir(out, command="first") as tmp:
        (tmp / "a.txt").write_text("one")
    assert is_marked(out) and '"command": "first"' in (out / MARKER_NAME).read_text()
    with pytest.raises(RuntimeError):
        with atomic_dir(out, overwrite=True) as tmp:
            (tmp / "a.txt").write_text("half")
            raise RuntimeError("killed half way")
    assert (out / "a.txt").read_text() == "one"  # a failed replacement leaves the old folder
    with atomic_dir(out, overwrite=True, command="second") as tmp:
        (tmp / "b.txt").write_text("two")
    assert sorted(p.name for p in out.iterdir()) == [MARKER_NAME, "b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_cli_overwrite_replaces_a_folder_dq_edge_wrote(tmp_path, capsys):
    out = tmp_path / "recon"
    args = ["reconstruct", "tiny", "--resize", "--out", str(out)]
    assert main(args) == 0
    first = (out / "summary.json").read_bytes()
    assert main(args) == 2 and "--overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    assert (out / "summary.json").read_bytes() == first and is_marked(out)


RACER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from dq_edge.errors import OutputBusyError
    from dq_edge.outputs import claim_output

    out, go, name = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    while not go.exists():
        time.sleep(0.005)
    start = time.perf_counter()
    try:
        with claim_output(out, "race", overwrite=True) as claim, claim.staging() as tmp:
            (tmp / "winner.txt").write_text(name)
            time.sleep(1.5)  # the "work": the other writer must fail during it, not after
    except OutputBusyError:
        print(f"busy {time.perf_counter() - start:.3f}")
        sys.exit(3)
    print("ok")
    """
)


def test_two_writers_one_wins_the_other_fails_at_once(tmp_path):
    out, go = tmp_path / "out", tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen([sys.executable, "-c", RACER, str(out), str(go), name], stdout=subprocess.PIPE, text=True, env=env)
        for name in ("a", "b")
    ]
    time.sleep(1.0)  # both are waiting on the start line
    go.write_text("")
    results = [(p.wait(timeout=60), p.stdout.read().strip()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 3], results
    loser = next(text for code, text in results if code == 3)
    assert float(loser.split()[1]) < 1.0  # failed before the winner's work was done
    winner = next(name for (code, _), name in zip(results, "ab") if code == 0)
    assert (out / "winner.txt").read_text() == winner
    assert sorted(p.name for p in tmp_path.iterdir()) == ["go", "out"]


def test_lock_is_reentrant_in_one_process(tmp_path):
    with claim_output(tmp_path / "out", "outer") as claim:
        with atomic_dir(tmp_path / "out") as tmp:  # library code inside a command's claim
            (tmp / "x").write_text("x")
        assert claim.path == (tmp_path / "out").resolve()
    with pytest.raises(OutputBusyError):
        from filelock import FileLock

        other = FileLock(str(tmp_path / ".out.lock"))
        other.acquire()
        try:
            with claim_output(tmp_path / "out", "second", overwrite=True):
                pass
        finally:
            other.release()


def test_stale_temps_of_dead_writers_are_removed(tmp_path):
    dead, alive = _dead_pid(), os.getppid()
    stale = tmp_path / f".out.{dead}-0123abcd.tmp"
    (stale / "graph.onnx").parent.mkdir()
    (stale / "graph.onnx").write_bytes(b"x" * 1000)
    old = tmp_path / f".out.{dead}-89abcdef.old"
    old.mkdir()
    stale_file = tmp_path / f".tokens.npz.{dead}-00000000.tmp"
    stale_file.write_bytes(b"y")
    live = tmp_path / f".out.{alive}-0123abcd.tmp"
    live.mkdir()
    with claim_output(tmp_path / "out", "test") as claim, claim.staging() as tmp:
        (tmp / "a").write_text("a")
    assert not stale.exists() and not old.exists()
    assert live.exists() and stale_file.exists()  # a live writer's temp / another output's temp stay
    assert remove_stale_temps(tmp_path) == [stale_file]
    from filelock import FileLock

    busy = tmp_path / f".report.json.{dead}-11111111.tmp"
    busy.write_text("z")
    held = FileLock(str(tmp_path / ".report.json.lock"))
    held.acquire()
    try:  # a dead pid, but its output's lock is held (a writer in another pid namespace): kept
        assert remove_stale_temps(tmp_path) == [] and busy.exists()
    finally:
        held.release()
    assert remove_stale_temps(tmp_path) == [busy]


def test_default_model_cache_sweeps_killed_exports(tmp_path):
    folder = tmp_path / "cache" / "0123456789abcdef" / "fp32"
    stale = folder.parent / f".fp32.{_dead_pid()}-0123abcd.tmp"
    stale.mkdir(parents=True)
    (stale / "transformer.fp32.onnx").write_bytes(b"z" * 4096)
    legacy_old, legacy_new = folder.parent / ".fp32.k2j_9xq1.tmp", folder.parent / ".fp32.zz81_0aq.tmp"
    legacy_old.mkdir()
    legacy_new.mkdir()
    os.utime(legacy_old, (time.time() - 2 * 3600, time.time() - 2 * 3600))
    prepare_cache_folder(folder)
    assert not stale.exists()
    assert not legacy_old.exists() and legacy_new.exists()  # an earlier version's temp: only once abandoned
    folder.mkdir()
    (folder / "manifest.json").write_text("{}")
    prepare_cache_folder(folder)  # an older dq-edge's cache copy becomes replaceable
    assert is_marked(folder)


@pytest.mark.parametrize("umask, dir_mode, file_mode", [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600)])
def test_outputs_honour_the_umask(tmp_path, umask, dir_mode, file_mode):
    previous = os.umask(umask)
    try:
        with atomic_dir(tmp_path / "out") as tmp:
            with atomic_path(tmp / "tokens.npz") as f:
                f.write_bytes(b"t")
            (tmp / "plain.txt").write_text("p")
        with atomic_path(tmp_path / "report.json") as f:
            f.write_text("{}")
    finally:
        os.umask(previous)
    out = tmp_path / "out"
    assert stat.S_IMODE(out.stat().st_mode) == dir_mode
    for path in (out / "tokens.npz", out / "plain.txt", out / MARKER_NAME, tmp_path / "report.json"):
        assert stat.S_IMODE(path.stat().st_mode) == file_mode, path


def test_failed_command_leaves_nothing(tmp_path):
    (tmp_path / "engine").mkdir()  # not an export: the runtime refuses it after the claim
    before = _tree(tmp_path)
    assert main(["run", "--engine", str(tmp_path / "engine"), "--out", str(tmp_path / "out")]) == 1
    assert _tree(tmp_path) == before


HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from dq_edge.outputs import claim_output

    with claim_output(Path(sys.argv[1]), "cache") as claim, claim.staging() as tmp:
        Path(sys.argv[2]).write_text("")
        (tmp / "manifest.json").write_text("{}")
        time.sleep(1.0)
    """
)


def test_cache_slot_waits_for_the_writer_instead_of_failing(tmp_path):
    from dq_edge.outputs import cache_slot

    folder, started = tmp_path / "cache" / "fp32", tmp_path / "started"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), str(started)], env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.monotonic() + 60
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    with cache_slot(folder, wait=60):
        assert (folder / "manifest.json").is_file()  # the other process finished before we got in
    assert proc.wait(timeout=60) == 0
    with pytest.raises(OutputBusyError):
        from filelock import FileLock

        other = FileLock(str(folder.parent / ".fp32.lock"))
        other.acquire()
        try:
            with cache_slot(folder, wait=0.2):
                pass
        finally:
            other.release()

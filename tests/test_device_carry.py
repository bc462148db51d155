"""benchmarks/device_carry.sh: the wheels a device call lacks, packed into folders that fit a call beside the tree
(a wheel larger than the room in parts), and installed on the device once each wheel is whole."""
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "device_carry.sh"
FAKE_PYTHON = """#!/bin/bash
case "$1" in
  -m) echo "$*" >> "$CALLS" ;;                                   # pip install: recorded, not run
  -c) echo "$FAKE_SITE" ;;                                       # site.getsitepackages()[0]
  *)  exec "$REAL_PYTHON" "$@" ;;                                # pack's planner
esac
"""
MIB = 1 << 20


def tree_bytes() -> int:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    return sum((ROOT / f.decode()).stat().st_size for f in files if f and (ROOT / f.decode()).exists())


def carry(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    fake = tmp_path / "bin" / "python3"
    fake.parent.mkdir(exist_ok=True)
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    run_env = dict(os.environ, PATH=f"{fake.parent}{os.pathsep}{os.environ['PATH']}", CALLS=str(tmp_path / "calls"),
                   FAKE_SITE=str(tmp_path / "sys-site"), REAL_PYTHON=subprocess.run(
                       ["bash", "-c", "command -v python3"], capture_output=True, text=True).stdout.strip(),
                   CARRY_OUT=str(tmp_path / "out"), CARRY_DIR=str(tmp_path / "device" / "carry"),
                   SITE_DIR=str(tmp_path / "device" / "site"), **env)
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=run_env, cwd=ROOT,
                          timeout=60)


def test_wheels_are_packed_to_fit_the_room_and_installed_once_whole(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    sizes = {"big-1.0-py3-none-any.whl": 5 * MIB + 123, "mid-1.0-py3-none-any.whl": 2 * MIB,
             "small-1.0-py3-none-any.whl": MIB // 2}
    for name, size in sizes.items():
        (wheels / name).write_bytes(os.urandom(size))
    room = 3 * MIB
    out = carry(tmp_path, "pack", "--from", str(wheels), CARRY_LIMIT=str(tree_bytes() + MIB + room))
    assert out.returncode == 0, out.stderr
    folders = sorted((tmp_path / "out").glob(".carry-*"))
    for f in folders:
        assert sum(p.stat().st_size for p in f.iterdir()) <= room, f
    names = sorted(p.name for f in folders for p in f.iterdir())
    assert names == ["big-1.0-py3-none-any.whl.part-1-of-2", "big-1.0-py3-none-any.whl.part-2-of-2",
                     "mid-1.0-py3-none-any.whl", "small-1.0-py3-none-any.whl"]
    assert len(folders) == 3 and f"calls: 3 (room beside the tree: {room:,} bytes each)" in out.stdout

    installed = []
    for f in folders:   # the calls, in order: a wheel is installed in the call where its last part arrives
        out = carry(tmp_path, "install", str(f))
        assert out.returncode == 0, out.stderr
        calls = (tmp_path / "calls").read_text().splitlines() if (tmp_path / "calls").exists() else []
        installed.append([c.split()[-1] for c in calls[len(sum(installed, [])):]])
    assert sorted(sum(installed, [])) == sorted(sizes)
    part_folders = [i for i, f in enumerate(folders) if any(".part-" in p.name for p in f.iterdir())]
    assert installed[max(part_folders)].count("big-1.0-py3-none-any.whl") == 1
    for i in range(max(part_folders)):
        assert "big-1.0-py3-none-any.whl" not in installed[i]
    joined = tmp_path / "device" / "carry" / "big-1.0-py3-none-any.whl"
    assert joined.read_bytes() == (wheels / "big-1.0-py3-none-any.whl").read_bytes()
    env = (tmp_path / "device" / "carry" / "env.sh").read_text()
    assert f"export PYTHONPATH={tmp_path / 'device' / 'site'}" in env


def test_a_tree_that_leaves_no_room_says_so(tmp_path):
    (tmp_path / "wheels").mkdir()
    out = carry(tmp_path, "pack", "--from", str(tmp_path / "wheels"), CARRY_LIMIT=str(tree_bytes()))
    assert out.returncode == 2 and "leaves no room in a call: run 'out' first" in out.stderr


def wheel(folder: Path, dist: str, files: dict[str, str]) -> Path:
    """A minimal pure-Python wheel (METADATA, WHEEL, RECORD) holding `files`."""
    import zipfile
    info = f"{dist}-1.0.dist-info"
    path = folder / f"{dist}-1.0-py3-none-any.whl"
    members = {**files, f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n",
               f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = "".join(f"{name},,\n" for name in members) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as z:
        for name, text in {**members, f"{info}/RECORD": record}.items():
            z.writestr(name, text)
    return path


def test_wheels_that_share_a_top_level_folder_are_both_installed(tmp_path):
    """MLX's front end (mlx/core) and MLX-CUDA (mlx/lib) share mlx/: installed in one call or in two, with
    the real pip, the site holds both (pip --target alone keeps one of them)."""
    for calls in ([["front", "back"]], [["front"], ["back"]]):
        base = tmp_path / str(len(calls))
        folders = []
        for k, names in enumerate(calls, 1):
            folder = base / f".carry-{k}"
            folder.mkdir(parents=True)
            for name in names:
                wheel(folder, name, {f"pkg/{name}.py": f"WHO = {name!r}\n"})
            folders.append(folder)
        env = dict(os.environ, CARRY_DIR=str(base / "device" / "carry"), SITE_DIR=str(base / "device" / "site"))
        for folder in folders:
            out = subprocess.run(["bash", str(SCRIPT), "install", str(folder)], capture_output=True, text=True,
                                 env=env, cwd=ROOT, timeout=120)
            assert out.returncode == 0, out.stderr
        site = base / "device" / "site"
        assert sorted(p.name for p in (site / "pkg").iterdir()) == ["back.py", "front.py"], calls
        assert sorted(p.name for p in site.glob("*.dist-info")) == ["back-1.0.dist-info", "front-1.0.dist-info"]

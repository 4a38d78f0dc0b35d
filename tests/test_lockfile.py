"""Reading lockfiles: real files written by the real uv (pylock.toml, uv.lock, hashed requirements), plus
handwritten broken ones. Index URLs are never spelled here: expected values are read from the generated files."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import packaging
import pytest
from packaging.version import Version

from abiguard.sources.lockfile import (
    LockedPackage,
    LockfileContents,
    LockfileError,
    entry_lines,
    lockfile_kind,
    marker_environment,
    read_lockfile,
    select_entries,
)
from tests.support.venvs import uv, uv_env
from tests.support.wheels import build_wheel

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

TARGET = ["--python-version", "3.11", "--python-platform", "x86_64-manylinux_2_28"]
PINS = "pandas==2.0.3\nnumpy==2.0.2\n"
PYPROJECT = """\
[project]
name = "demo"
version = "0.1.0"
requires-python = ">=3.10"
dependencies = [
    "pandas==2.0.3",
    "numpy==2.0.2",
    "requests[socks]==2.32.3; sys_platform == 'linux'",
]

[project.optional-dependencies]
win = ["colorama==0.4.6; sys_platform == 'win32'"]

[dependency-groups]
dev = ["six"]
"""
TARGETS = [
    ("3.10", "manylinux_2_28_x86_64"),
    ("3.11", "manylinux_2_17_x86_64"),
    ("3.12", "win_amd64"),
    ("3.11", "macosx_11_0_arm64"),
    ("3.13", "musllinux_1_2_aarch64"),
]
SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Generated:
    pylock: Path  # uv pip compile for one target
    requirements: Path  # the same, as hashed requirements
    uv_lock: Path  # uv lock of a small project (universal)
    exported: Path  # uv export of that uv.lock to pylock.toml, with all extras and groups


def _run(*args: str, cwd: Path) -> None:
    done = subprocess.run([uv(), *args], cwd=cwd, env=uv_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    root = tmp_path_factory.mktemp("locks")
    (root / "requirements.in").write_text(PINS)
    _run("pip", "compile", "--quiet", *TARGET, "--format", "pylock.toml", "-o", "pylock.toml", "requirements.in",
         cwd=root)
    _run("pip", "compile", "--quiet", *TARGET, "--generate-hashes", "-o", "requirements.txt", "requirements.in",
         cwd=root)
    project = root / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(PYPROJECT)
    _run("lock", "--quiet", "--python", sys.executable, cwd=project)
    _run("export", "--quiet", "--frozen", "--all-extras", "--all-groups", "--format", "pylock.toml",
         "-o", "pylock.toml", cwd=project)
    return Generated(root / "pylock.toml", root / "requirements.txt", project / "uv.lock", project / "pylock.toml")


def _by_name(contents: LockfileContents) -> dict[str, list[LockedPackage]]:
    found: dict[str, list[LockedPackage]] = {}
    for entry in contents.entries:
        found.setdefault(entry.name, []).append(entry)
    return found


def _manylinux_cp311(entry: LockedPackage) -> list[str]:
    return [w.filename for w in entry.wheels if "cp311-cp311-manylinux" in w.filename and "x86_64" in w.filename]


# -- real files -------------------------------------------------------------------------------------------


@pytest.mark.network
def test_pylock_from_uv_pip_compile(generated: Generated) -> None:
    contents = read_lockfile(generated.pylock)
    raw = tomllib.loads(generated.pylock.read_text())
    raw_wheels = {p["name"]: p["wheels"] for p in raw["packages"]}
    assert contents.kind == "pylock"
    assert contents.errors == []
    assert contents.requires_python == ">=3.11"
    entries = _by_name(contents)
    for name, version in (("numpy", "2.0.2"), ("pandas", "2.0.3")):
        (entry,) = entries[name]
        assert entry.version == version
        assert entry.marker is None  # compiled for one platform: nothing is conditional
        (wheel,) = entry.wheels
        assert _manylinux_cp311(entry) == [wheel.filename]
        assert wheel.filename.startswith(f"{name}-{version}-")
        assert wheel.url == raw_wheels[name][0]["url"] and wheel.url.endswith("/" + wheel.filename)
        assert wheel.sha256 is not None and SHA256.fullmatch(wheel.sha256)
        assert wheel.size and wheel.size > 1_000_000
        assert wheel.upload_time is not None and wheel.upload_time.tzinfo is not None
        assert f"sha256:{wheel.sha256}" in entry.hashes
        assert entry.sdist_url and entry.sdist_url.endswith(".tar.gz")
    assert {e.name for e in select_entries(contents, marker_environment("3.11", "manylinux_2_28_x86_64"))} == set(
        entries
    )


@pytest.mark.network
def test_uv_lock_from_uv_lock(generated: Generated) -> None:
    contents = read_lockfile(generated.uv_lock)
    raw = tomllib.loads(generated.uv_lock.read_text())
    registry = next(p["source"]["registry"] for p in raw["package"] if p["name"] == "numpy")
    pylock = _by_name(read_lockfile(generated.pylock))
    assert contents.kind == "uv.lock"
    assert contents.errors == []
    assert contents.requires_python == ">=3.10"
    entries = _by_name(contents)
    assert "demo" not in entries  # the project itself is not a locked artifact
    for name, version in (("numpy", "2.0.2"), ("pandas", "2.0.3")):
        (entry,) = entries[name]
        assert entry.version == version
        assert entry.source == registry
        assert entry.marker is None
        assert len(entry.wheels) > 5  # universal: every platform's wheels
        (linux,) = [w for w in entry.wheels if w.filename in _manylinux_cp311(entry)]
        (expected,) = pylock[name][0].wheels  # the same wheel, as uv pip compile picked it for the target
        assert (linux.url, linux.filename, linux.sha256, linux.size) == (
            expected.url, expected.filename, expected.sha256, expected.size
        )
        assert linux.upload_time and expected.upload_time  # uv.lock keeps milliseconds, pylock.toml does not
        assert linux.upload_time.replace(microsecond=0) == expected.upload_time
        assert all(w.sha256 and SHA256.fullmatch(w.sha256) for w in entry.wheels)
    # markers live on uv.lock's edges; the reader derives each package's own
    assert entries["colorama"][0].marker == "sys_platform == 'win32'"
    assert entries["pysocks"][0].marker == "sys_platform == 'linux'"


@pytest.mark.network
@pytest.mark.parametrize(("python", "platform"), TARGETS)
def test_uv_lock_selection_matches_uv_export(generated: Generated, python: str, platform: str) -> None:
    """uv's own export is the oracle for which packages a uv.lock installs where."""
    env = marker_environment(python, platform)
    ours = {(e.name, e.version) for e in select_entries(read_lockfile(generated.uv_lock), env)}
    uvs = {(e.name, e.version) for e in select_entries(read_lockfile(generated.exported), env)}
    assert ours == uvs
    assert {"numpy", "pandas"} <= {name for name, _ in ours}
    assert len({name for name, _ in ours}) == len(ours)  # one version of each name per target
    assert ("pysocks" in {n for n, _ in ours}) == platform.startswith(("manylinux", "musl"))


@pytest.mark.network
def test_requirements_with_hashes_from_uv(generated: Generated) -> None:
    contents = read_lockfile(generated.requirements)
    assert contents.kind == "requirements"
    assert contents.errors == []
    entries = _by_name(contents)
    pylock = _by_name(read_lockfile(generated.pylock))
    assert set(entries) == set(pylock)
    for name, version in (("numpy", "2.0.2"), ("pandas", "2.0.3")):
        (entry,) = entries[name]
        assert entry.version == version
        assert len(entry.hashes) > 5 and all(h.startswith("sha256:") for h in entry.hashes)
        assert f"sha256:{pylock[name][0].wheels[0].sha256}" in entry.hashes
        assert entry.wheels == [] and entry.source is None


# -- handwritten files ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pylock.toml", "pylock.dev.toml", "uv.lock"])
def test_malformed_toml_is_one_line_error(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text('lock-version = "1.0"\n\n[[packages]\nname = "numpy"\n')
    with pytest.raises(LockfileError) as caught:
        read_lockfile(path)
    message = str(caught.value)
    assert "\n" not in message
    assert str(path) in message and "line 3" in message


def test_unknown_kind_names_the_supported_ones(tmp_path: Path) -> None:
    path = tmp_path / "poetry.lock"
    path.write_text("")
    with pytest.raises(LockfileError, match=r"pylock\.toml.*uv\.lock.*requirements") as caught:
        read_lockfile(path)
    assert str(path) in str(caught.value)
    with pytest.raises(LockfileError, match="cannot read"):
        read_lockfile(tmp_path / "uv.lock")  # missing
    with pytest.raises(LockfileError, match="cannot read"):
        read_lockfile(tmp_path / "requirements.txt")
    assert lockfile_kind(Path("requirements-dev.txt")) == "requirements"
    assert lockfile_kind(Path("constraints")) == "requirements"
    assert lockfile_kind(Path("requirements.lock")) == "requirements"  # Rye writes pip's format under these
    assert lockfile_kind(Path("requirements-dev.lock")) == "requirements"
    assert lockfile_kind(Path("pylock.gpu.toml")) == "pylock"
    for bad in ("pylock.a.b.toml", "pyproject.toml", "Pipfile.lock", "reqs.pip"):
        with pytest.raises(LockfileError, match=r"copied to a name ending in \.txt"):
            lockfile_kind(Path(bad))


def test_unsupported_versions(tmp_path: Path) -> None:
    (tmp_path / "pylock.toml").write_text('lock-version = "2.0"\n')
    (tmp_path / "uv.lock").write_text("version = 7\n")
    with pytest.raises(LockfileError, match=re.escape("lock-version '2.0'")):
        read_lockfile(tmp_path / "pylock.toml")
    with pytest.raises(LockfileError, match=re.escape("uv.lock version 7")):
        read_lockfile(tmp_path / "uv.lock")


def test_requirements_bad_lines_are_reported_and_the_rest_kept(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "more.txt").write_text("scipy==1.13.1\n-r ../requirements.txt  # a cycle\n")
    path = tmp_path / "requirements.txt"
    path.write_text(textwrap.dedent("""\
        # pins
        --index-url https://mirror.example/simple
        --extra-index-url=https://other.example/simple
        numpy==2.0.2 \\
            --hash=sha256:aaaa \\
            --hash=sha256:bbbb
        numpy>=1
        Pandas[performance]==2.0.3 ; python_version >= "3.10"  # trailing comment
        https://files.example/x-1.0-py3-none-any.whl
        -e git+https://user:secret@git.example/x.git#egg=x
        ./local/project
        -r sub/more.txt
        -r missing.txt
        not a requirement!
        --frobnicate
        h5py===3.11.0
        six==1.*
        ujson @ https://files.example/ujson-5.10.0.tar.gz
        --no-binary :all:
        """))
    contents = read_lockfile(path)
    assert [(e.name, e.version, e.marker) for e in contents.entries] == [
        ("numpy", "2.0.2", None),
        ("Pandas", "2.0.3", 'python_version >= "3.10"'),
        ("x", "1.0", None),  # a wheel by URL: read like a locked wheel
        ("scipy", "1.13.1", None),
        ("h5py", "3.11.0", None),
        ("ujson", "", None),  # an sdist by URL: built at install, so it has no version to check
    ]
    assert contents.entries[0].hashes == ["sha256:aaaa", "sha256:bbbb"]
    x, ujson = contents.entries[2], contents.entries[5]
    assert [w.url for w in x.wheels] == ["https://files.example/x-1.0-py3-none-any.whl"]
    assert ujson.origin == "url: https://files.example/ujson-5.10.0.tar.gz" and ujson.wheels == []
    assert contents.index_urls == ["https://mirror.example/simple", "https://other.example/simple"]
    assert {e.source for e in contents.entries} == {"https://mirror.example/simple"}

    def lines(messages: list[str]) -> list[int]:
        return [int(m.group(1)) if (m := re.match(rf"{re.escape(str(path))}:(\d+): ", e)) else -1 for e in messages]

    assert lines(contents.errors) == [7, 13, 14, 15, 17], contents.errors
    assert all(e.startswith(f"{path}:") and "\n" not in e for e in contents.errors)
    assert "numpy>=1 is not pinned" in contents.errors[0]
    assert "missing.txt" in contents.errors[1]
    # an editable and a local directory are built at install: notes, not errors, credentials masked
    assert lines(contents.notes) == [10, 11], contents.notes
    assert all(n.endswith("built from source at install, not checked") for n in contents.notes)
    assert "./local/project" in contents.notes[1]
    assert not any("secret" in e for e in contents.errors + contents.notes)


def test_requirements_expand_variables_and_join_continuations_as_pip_does(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """pip replaces `${VAR}` (upper case, digits, `_`) with its value, leaving an unset one as written, and joins
    a line ending in `\\` to the next with nothing between them; a comment line ends a continuation."""
    monkeypatch.setenv("PVER", "1.5.3")
    monkeypatch.setenv("lower", "9")
    monkeypatch.delenv("UNSET_ABIGUARD", raising=False)
    path = tmp_path / "requirements.txt"
    path.write_text("pandas==${PVER}\nnum\\\npy==1.26.4\nsix==${lower}\nh5py==${UNSET_ABIGUARD}\n"
                    "scipy==1.13.1 \\\n# a comment\npytz==2024.1\n")
    contents = read_lockfile(path)
    assert [(e.name, e.version) for e in contents.entries] == [
        ("pandas", "1.5.3"), ("numpy", "1.26.4"), ("scipy", "1.13.1"), ("pytz", "2024.1")]
    assert [e.split(": ", 1)[0] for e in contents.errors] == [f"{path}:4", f"{path}:5"]
    assert "${lower}" in contents.errors[0] and "${UNSET_ABIGUARD}" in contents.errors[1]
    assert entry_lines(path) == {"pandas": 1, "numpy": 2, "six": 4, "h5py": 5, "scipy": 6, "pytz": 8}


def test_select_entries_filters_by_marker(tmp_path: Path) -> None:
    path = tmp_path / "requirements.txt"
    path.write_text(textwrap.dedent("""\
        numpy==1.26.4 ; python_version < "3.12"
        numpy==2.0.2 ; python_version >= "3.12"
        pywin32==306 ; sys_platform == "win32"
        tbb==2021.13.0 ; platform_machine == "x86_64"
        pandas==2.2.2
        """))
    contents = read_lockfile(path)

    def names(python: str, platform: str) -> list[str]:
        return [f"{e.name}=={e.version}" for e in select_entries(contents, marker_environment(python, platform))]

    assert names("3.11", "manylinux_2_17_x86_64") == ["numpy==1.26.4", "tbb==2021.13.0", "pandas==2.2.2"]
    assert names("3.12", "win_amd64") == ["numpy==2.0.2", "pywin32==306", "pandas==2.2.2"]
    assert names("3.12", "macosx_14_0_arm64") == ["numpy==2.0.2", "pandas==2.2.2"]
    with pytest.raises(ValueError, match="sys_platform"):
        select_entries(contents, {"python_version": "3.11"})


def test_pylock_environments_and_local_sources(tmp_path: Path) -> None:
    path = tmp_path / "pylock.toml"
    path.write_text(textwrap.dedent("""\
        lock-version = "1.0"
        requires-python = ">=3.10"
        environments = ["sys_platform == 'linux'"]
        default-groups = ["test"]
        created-by = "hand"

        [[packages]]
        name = "numpy"
        version = "2.0.2"
        index = "https://mirror.example/simple"
        wheels = [{ path = "wheels/numpy-2.0.2-cp311-cp311-linux_x86_64.whl", hashes = { sha256 = "ab" } }]

        [[packages]]
        name = "pytest"
        version = "8.3.0"
        marker = "'test' in dependency_groups"
        wheels = [{ name = "pytest-8.3.0-py3-none-any.whl", url = "https://files.example/p.whl?x=1" }]

        [[packages]]
        name = "mine"
        directory = { path = "." }

        [[packages]]
        version = "1.0"

        [[packages]]
        name = "odd"
        version = "1.0"
        marker = "python_version >>> '3'"

        [[packages]]
        name = "pandas"
        version = 2

        [[packages]]
        name = "noversion"
        wheels = [{ name = "noversion-1.0-py3-none-any.whl", url = "https://files.example/n.whl" }]
        """))
    contents = read_lockfile(path)
    numpy, pytest_, mine, _odd = contents.entries
    (wheel,) = numpy.wheels
    assert wheel.url == (tmp_path / "wheels" / wheel.filename).resolve().as_uri() and wheel.sha256 == "ab"
    assert numpy.source == "https://mirror.example/simple"
    assert pytest_.wheels[0].filename == "pytest-8.3.0-py3-none-any.whl" and pytest_.wheels[0].sha256 is None
    errors = contents.errors
    if Version(packaging.__version__) < Version("25"):  # no PEP 751 marker variables before packaging 25
        assert errors[0].startswith("package pytest: invalid marker")
        errors = errors[1:]
    # the project itself is built at install: kept with its origin (PEP 751 gives such entries no version)
    assert (mine.version, mine.origin, mine.wheels) == ("", "directory: .", [])
    assert errors[0].startswith(f"{path}: package #4 has no name")
    assert errors[1].startswith("package odd: invalid marker")
    assert errors[2] == "package pandas: version 2 is not a string; not checked"
    assert errors[3] == "package noversion: no version; not checked"
    assert len(errors) == 4
    linux = marker_environment("3.11", "linux_x86_64")
    assert [e.name for e in select_entries(contents, linux)] == ["numpy", "pytest", "mine", "odd"]
    if Version(packaging.__version__) >= Version("25"):
        assert [e.name for e in select_entries(contents, linux, groups=[])] == ["numpy", "mine", "odd"]
    with pytest.raises(LockfileError, match="none of the lockfile's environments"):
        select_entries(contents, marker_environment("3.11", "win_amd64"))
    with pytest.raises(LockfileError, match=re.escape("requires Python >=3.10; the target is 3.9.0")):
        select_entries(contents, marker_environment("3.9", "linux_x86_64"))


def test_uv_lock_graph_with_extras_cycles_and_workspace(tmp_path: Path) -> None:
    """Markers accumulate along paths, an extra pulls its optional dependencies, and cycles terminate."""
    path = tmp_path / "uv.lock"
    path.write_text(textwrap.dedent("""\
        version = 1
        requires-python = ">=3.10"

        [manifest]
        members = ["app", "lib"]

        [[package]]
        name = "app"
        version = "0.1.0"
        source = { editable = "packages/app" }
        dependencies = [
            { name = "a", marker = "sys_platform == 'linux'" },
            { name = "lib" },
            { name = "b", extra = ["fast"] },
        ]

        [[package]]
        name = "lib"
        version = "0.1.0"
        source = { editable = "packages/lib" }

        [[package]]
        name = "a"
        version = "1.0"
        source = { registry = "https://mirror.example/simple" }
        dependencies = [{ name = "b", marker = "python_full_version < '3.12'" }, { name = "c" }]

        [[package]]
        name = "b"
        version = "2.0"
        source = { registry = "wheels" }
        dependencies = [{ name = "a" }]
        wheels = [{ path = "b-2.0-py3-none-any.whl", hash = "sha256:cd" }]

        [package.optional-dependencies]
        fast = [{ name = "d", marker = "platform_machine == 'x86_64'" }]
        slow = [{ name = "e" }]

        [[package]]
        name = "c"
        version = "3.0"
        source = { git = "https://git.example/c.git?rev=main#0123abcd" }

        [[package]]
        name = "d"
        version = "4.0"
        source = { registry = "https://mirror.example/simple" }

        [[package]]
        name = "e"
        version = "5.0"
        source = { registry = "https://mirror.example/simple" }
        """))
    contents = read_lockfile(path)
    assert contents.errors == []
    assert contents.notes == [  # the workspace members are built at install, as `uv export` says of them
        f"package {m} 0.1.0 (editable: packages/{m}): built from source at install, not checked"
        for m in ("app", "lib")]
    markers = {e.name: e.marker for e in contents.entries}
    # b is required by app directly, so a (via b) and c (via a) are always installed too; nothing asks for
    # b[slow], so e is reachable from no project: kept unconditionally, as over-checking is safe
    assert markers == {"a": None, "b": None, "c": None, "d": "platform_machine == 'x86_64'", "e": None}
    c = next(e for e in contents.entries if e.name == "c")
    assert c.origin == "git: https://git.example/c.git?rev=main#0123abcd" and c.source is None
    b = next(e for e in contents.entries if e.name == "b")
    assert b.source == "wheels"  # a local directory registry: its wheels are files
    assert b.wheels[0].url == (tmp_path / "wheels" / "b-2.0-py3-none-any.whl").resolve().as_uri()
    assert (b.wheels[0].filename, b.wheels[0].sha256, b.hashes) == ("b-2.0-py3-none-any.whl", "cd", ["sha256:cd"])
    arm = marker_environment("3.12", "manylinux_2_28_aarch64")
    assert [e.name for e in select_entries(contents, arm)] == ["a", "b", "c", "e"]


def test_uv_lock_markers_and_along_paths(tmp_path: Path) -> None:
    path = tmp_path / "uv.lock"
    path.write_text(textwrap.dedent("""\
        version = 1

        [[package]]
        name = "app"
        version = "0.1.0"
        source = { virtual = "." }
        dependencies = [
            { name = "a", marker = "sys_platform == 'linux'" },
            { name = "b", marker = "sys_platform == 'win32'" },
        ]

        [[package]]
        name = "a"
        version = "1.0"
        source = { registry = "https://mirror.example/simple" }
        dependencies = [{ name = "c", marker = "python_full_version >= '3.12'" }]

        [[package]]
        name = "b"
        version = "1.0"
        source = { registry = "https://mirror.example/simple" }
        dependencies = [{ name = "c" }, { name = "missing" }]

        [[package]]
        name = "c"
        version = "1.0"
        source = { registry = "https://mirror.example/simple" }
        """))
    contents = read_lockfile(path)
    assert contents.errors == ["package b: dependency missing is not in the lock"]
    c = next(e for e in contents.entries if e.name == "c")
    assert c.marker == "((python_full_version >= '3.12') and (sys_platform == 'linux')) or (sys_platform == 'win32')"
    pick = {(py, plat): [e.name for e in select_entries(contents, marker_environment(py, plat))]
            for py in ("3.11", "3.12") for plat in ("linux_x86_64", "win_amd64", "macosx_11_0_arm64")}
    assert pick == {
        ("3.11", "linux_x86_64"): ["a"], ("3.12", "linux_x86_64"): ["a", "c"],
        ("3.11", "win_amd64"): ["b", "c"], ("3.12", "win_amd64"): ["b", "c"],
        ("3.11", "macosx_11_0_arm64"): [], ("3.12", "macosx_11_0_arm64"): [],
    }


@pytest.mark.parametrize(("platform", "expected"), [
    ("manylinux_2_28_x86_64", ("linux", "Linux", "x86_64", "posix")),
    ("musllinux_1_2_aarch64", ("linux", "Linux", "aarch64", "posix")),
    ("macosx_11_0_arm64", ("darwin", "Darwin", "arm64", "posix")),
    ("macosx_10_9_x86_64", ("darwin", "Darwin", "x86_64", "posix")),
    ("win_amd64", ("win32", "Windows", "AMD64", "nt")),
    ("win32", ("win32", "Windows", "x86", "nt")),
    ("win_arm64", ("win32", "Windows", "ARM64", "nt")),
    ("manylinux2014_aarch64", ("linux", "Linux", "aarch64", "posix")),
    ("macosx-11.0-arm64", ("darwin", "Darwin", "arm64", "posix")),  # sysconfig's spelling of the same tag
])
def test_marker_environment(platform: str, expected: tuple[str, str, str, str]) -> None:
    env = marker_environment("3.11", platform)
    assert (env["sys_platform"], env["platform_system"], env["platform_machine"], env["os_name"]) == expected
    assert (env["python_version"], env["python_full_version"]) == ("3.11", "3.11.0")
    for bad in (("3", platform), ("3.11", "solaris_sparc"), ("3.11", "linux_mips")):
        with pytest.raises(ValueError):
            marker_environment(*bad)


@pytest.mark.parametrize("platform", ["aarch64-apple-darwin", "x86_64-manylinux_2_28", "x86_64-pc-windows-msvc",
                                      "linux", "macos", "windows"])
def test_marker_environment_refuses_uv_platform_names(platform: str) -> None:
    """uv's --python-platform names are not wheel tags: accepted, they would match no wheel, so each is refused
    in one line that names the tags to use instead."""
    with pytest.raises(ValueError) as caught:
        marker_environment("3.11", platform)
    message = str(caught.value)
    assert "not a wheel platform tag" in message and "\n" not in message
    assert all(tag in message for tag in ("manylinux_2_28_x86_64", "win_amd64", "macosx_11_0_arm64"))


def test_sources_built_at_install_and_local_wheels_from_uv(tmp_path: Path) -> None:
    """A project with a local library (built at install) and a local wheel, locked and exported by the real
    uv: the project and the library are kept with their origin and no wheel (or, unnamed, become notes), and
    the wheel is a file URL to read from disk, in each of the three formats."""
    lib = tmp_path / "lib"
    (lib / "src" / "mylib").mkdir(parents=True)
    (lib / "src" / "mylib" / "__init__.py").write_text("")
    build = '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n'
    (lib / "pyproject.toml").write_text(f'[project]\nname = "mylib"\nversion = "0.3.0"\n{build}')
    wheel = build_wheel(tmp_path / "wh", "localwheel", "1.2", {"localwheel/__init__.py": b""}, [])
    project = tmp_path / "proj"
    (project / "src" / "demo").mkdir(parents=True)
    (project / "src" / "demo" / "__init__.py").write_text("")
    (project / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [project]
        name = "demo"
        version = "0.1.0"
        requires-python = ">=3.10"
        dependencies = ["mylib", "localwheel"]
        {build}
        [tool.uv.sources]
        mylib = {{ path = "../lib" }}
        localwheel = {{ path = "../wh/{wheel.name}" }}
        """))
    _run("lock", "--quiet", "--offline", "--python", sys.executable, cwd=project)
    _run("export", "--quiet", "--offline", "--format", "pylock.toml", "-o", "pylock.toml", cwd=project)
    _run("export", "--quiet", "--offline", "-o", "requirements.txt", cwd=project)
    wheel_url = wheel.resolve().as_uri()

    uv_lock = _by_name(read_lockfile(project / "uv.lock"))
    assert set(uv_lock) == {"mylib", "localwheel"}  # the project itself is not a locked artifact in uv.lock
    (mylib,) = uv_lock["mylib"]
    assert (mylib.version, mylib.origin, mylib.wheels) == ("0.3.0", "directory: ../lib", [])
    (local,) = uv_lock["localwheel"]
    assert [w.url for w in local.wheels] == [wheel_url] and local.wheels[0].sha256

    pylock = read_lockfile(project / "pylock.toml")
    assert pylock.errors == []
    found = _by_name(pylock)
    assert (found["demo"][0].version, found["demo"][0].origin) == ("", "directory: .")
    assert (found["mylib"][0].version, found["mylib"][0].origin) == ("", "directory: ../lib")
    assert [w.url for w in found["localwheel"][0].wheels] == [wheel_url]

    requirements = read_lockfile(project / "requirements.txt")
    assert requirements.errors == []
    assert [(e.name, e.version, [w.url for w in e.wheels]) for e in requirements.entries] == [
        ("localwheel", "1.2", [wheel_url])
    ]
    assert requirements.entries[0].hashes == [f"sha256:{local.wheels[0].sha256}"]
    assert [n.split(": ", 1)[1] for n in requirements.notes] == [
        "-e .: built from source at install, not checked", "../lib: built from source at install, not checked"
    ]


def test_requirements_hash_option_with_a_space(tmp_path: Path) -> None:
    """`--hash sha256:...` (no `=`), which pip and uv accept, is read like `--hash=sha256:...`."""
    path = tmp_path / "requirements.lock"  # Rye's name for a pip-format lock
    path.write_text("pytz==2024.1 --hash sha256:aaaa \\\n    --hash=sha256:bbbb --hash sha256:cccc\n")
    contents = read_lockfile(path)
    assert contents.errors == []
    (entry,) = contents.entries
    assert (entry.name, entry.version) == ("pytz", "2024.1")
    assert entry.hashes == ["sha256:aaaa", "sha256:bbbb", "sha256:cccc"]


def test_requirements_take_their_pins_from_constraint_files(tmp_path: Path) -> None:
    """`-c pins.txt` decides the version of an unpinned requirement, as it does for pip and uv; a constraint that
    pins nothing, or a pin the requirement excludes, leaves it unpinned (an error)."""
    (tmp_path / "pins.txt").write_text("numpy==2.0.2\npandas==2.0.3\nscipy<2\n")
    path = tmp_path / "requirements.txt"
    path.write_text("-c pins.txt\nnumpy\npandas>=2 ; python_version >= '3'\nscipy\npandas-stubs\nNumPy>=3\n")
    contents = read_lockfile(path)
    assert [(e.name, e.version, e.marker) for e in contents.entries] == [
        ("numpy", "2.0.2", None), ("pandas", "2.0.3", 'python_version >= "3"')]
    assert contents.errors == [f"{path}:4: scipy is not pinned to one version (use ==)",
                               f"{path}:5: pandas-stubs is not pinned to one version (use ==)",
                               f"{path}:6: NumPy>=3 is not pinned to one version (use ==)"]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32", "utf-8-sig"])
def test_requirements_in_the_encoding_their_byte_order_mark_names(tmp_path: Path, encoding: str) -> None:
    """PowerShell's `pip freeze > requirements.txt` writes UTF-16 with a byte-order mark; pip reads it, so do we,
    in included files too."""
    bom = {"utf-16-be": "\ufeff"}.get(encoding, "")  # Python writes the mark itself for the others
    (tmp_path / "more.txt").write_bytes((bom + "numpy==2.0.2\n").encode(encoding))
    path = tmp_path / "requirements.txt"
    path.write_bytes((bom + "pandas==2.0.3\r\n-r more.txt\r\n").encode(encoding))
    contents = read_lockfile(path)
    assert contents.errors == [] and [(e.name, e.version) for e in contents.entries] == [
        ("pandas", "2.0.3"), ("numpy", "2.0.2")]
    assert entry_lines(path) == {"pandas": 1}


def test_requirements_options_that_decide_which_files_are_installed(tmp_path: Path) -> None:
    """`--no-binary` makes a pin an sdist built at install, `--only-binary` forbids that (a name beats `:all:`,
    the later option beats the earlier for one name, as in pip); `-f` is taken beside the file when it is there,
    and `--no-index` is kept."""
    (tmp_path / "wh").mkdir()
    path = tmp_path / "requirements.txt"
    path.write_text("--no-binary :all:\n--only-binary=numpy,SciPy\n--no-binary scipy\n-f wh\n"
                    "--find-links https://links.example/wheels/\n--no-index\n"
                    "numpy==2.0.2\nscipy==1.13.1\npandas==2.0.3\nx @ https://files.example/x-1.0-py3-none-any.whl\n")
    contents = read_lockfile(path)
    assert contents.errors == []
    assert [(e.name, e.origin, e.binary_only) for e in contents.entries] == [
        ("numpy", None, True),
        ("scipy", "sdist: --no-binary scipy", False),
        ("pandas", "sdist: --no-binary :all:", False),
        ("x", "url: https://files.example/x-1.0-py3-none-any.whl", False),  # a wheel by URL is that wheel
    ]
    assert contents.find_links == [str(tmp_path / "wh"), "https://links.example/wheels/"] and contents.no_index
    path.write_text("--only-binary :all:\n--no-binary :none:\npandas==2.0.3\n")
    assert [e.binary_only for e in read_lockfile(path).entries] == [True]

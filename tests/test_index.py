"""The index client: configuration, PEP 691 JSON and PEP 503 HTML listings, tags and wheel selection."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from packaging.tags import Tag
from packaging.version import Version

from abiguard.sources.index import (
    JSON_TYPE,
    IndexClient,
    IndexConfig,
    IndexFile,
    NoMatchingWheel,
    PackageIndexError,
    ProjectNotFound,
    best_wheel,
    default_index_url,
    expand_platform,
    find_links_files,
    installer_environ,
    load_index_config,
    parse_file,
    releases,
    resolve,
    target_tags,
)
from abiguard.sources.remote import HttpClient
from tests.test_remote import PASSWORD, USER, WheelServer

LINUX311 = target_tags("3.11", "manylinux_2_17_x86_64")


@pytest.fixture(scope="module")
def server() -> Iterator[WheelServer]:
    srv = WheelServer()
    yield srv
    srv.close()


def listing(server: WheelServer, project: str, files: list[dict[str, object]], prefix: str = "/simple") -> str:
    body = json.dumps({"meta": {"api-version": "1.1"}, "name": project, "files": files}).encode()
    server.pages[f"{prefix}/{project}/"] = (JSON_TYPE, body)
    return f"{server.base}{prefix}/"


def entry(filename: str, **extra: object) -> dict[str, object]:
    data: dict[str, object] = {"filename": filename, "url": f"../../ok/{filename}", "hashes": {"sha256": "AB" * 32},
                               "size": 1234, "upload-time": "2024-04-10T12:00:00.123456Z", "yanked": False,
                               "requires-python": ">=3.9"}
    data.update(extra)
    return data


# --- configuration ----------------------------------------------------------------------------------------


def env_for(tmp_path: Path, **values: str) -> dict[str, str]:
    """An environment with no config files of its own (HOME and XDG dirs point into tmp_path)."""
    base = {"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
            "XDG_CONFIG_DIRS": str(tmp_path / "etc"), "VIRTUAL_ENV": str(tmp_path / "venv")}
    return {**base, **values}


def test_explicit_url_wins(tmp_path: Path) -> None:
    env = env_for(tmp_path, PIP_INDEX_URL="https://pip.example/simple", UV_INDEX_URL="https://uv.example/simple")
    config = load_index_config("https://cli.example/simple", ["https://extra.example/simple"], env, False)
    assert config.urls[0] == "https://cli.example/simple/"
    assert "https://extra.example/simple/" in config.urls


def test_env_vars_in_order(tmp_path: Path) -> None:
    env = env_for(tmp_path, UV_DEFAULT_INDEX="https://uvd.example/simple", PIP_INDEX_URL="https://pip.example/s",
                  UV_INDEX="internal=https://idx.example/simple https://idx2.example/simple",
                  UV_EXTRA_INDEX_URL="https://uve.example/simple", PIP_EXTRA_INDEX_URL="https://pipe.example/s")
    config = load_index_config(None, (), env, False)
    assert config.urls == ("https://uvd.example/simple/", "https://idx.example/simple/",
                           "https://idx2.example/simple/", "https://uve.example/simple/", "https://pipe.example/s/")
    only_pip = load_index_config(None, (), env_for(tmp_path, PIP_INDEX_URL="https://pip.example/s"), False)
    assert only_pip.urls == ("https://pip.example/s/",)


def test_pip_config_files(tmp_path: Path) -> None:
    user = tmp_path / "xdg" / "pip" / "pip.conf"
    user.parent.mkdir(parents=True)
    user.write_text("[global]\nindex-url = https://user.example/simple\ncert = /some/ca.pem\n"
                    "extra-index-url =\n    https://a.example/simple\n    file:///opt/local/simple\n")
    config = load_index_config(None, (), env_for(tmp_path), False)
    assert config.urls == ("https://user.example/simple/", "https://a.example/simple/")
    assert config.cafile == "/some/ca.pem"
    assert any("file:///opt/local/simple" in n and "skipped" in n for n in config.notes)
    explicit = tmp_path / "explicit.conf"
    explicit.write_text("[install]\nindex_url = https://explicit.example/simple\n")
    config = load_index_config(None, (), env_for(tmp_path, PIP_CONFIG_FILE=str(explicit)), False)
    assert config.urls == ("https://explicit.example/simple/",)  # PIP_CONFIG_FILE hides the user file


def test_uv_toml(tmp_path: Path) -> None:
    path = tmp_path / "xdg" / "uv" / "uv.toml"
    path.parent.mkdir(parents=True)
    path.write_text('extra-index-url = ["https://x.example/simple"]\n'
                    '[[index]]\nname = "corp"\nurl = "https://corp.example/simple"\ndefault = true\n'
                    '[[index]]\nname = "more"\nurl = "https://more.example/simple"\n')
    config = load_index_config(None, (), env_for(tmp_path), False)
    assert config.urls == ("https://corp.example/simple/", "https://x.example/simple/",
                           "https://more.example/simple/")
    assert load_index_config(None, (), env_for(tmp_path, UV_NO_CONFIG="1"), False).urls[0] != config.urls[0]


def test_installers_are_told_the_indexes_abiguard_reads(tmp_path: Path) -> None:
    """uv's settings reach pip in its own variables and pip's reach uv, the indexes abiguard reads and no other;
    UV_DEFAULT_INDEX goes, since uv lets it beat an `--index-url` argument; with nothing configured, nothing is
    set."""
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\nindex-url = https://pip.example/simple\n"
                    "extra-index-url = https://pe.example/s file:///srv/simple\n")
    env = env_for(tmp_path, PIP_CONFIG_FILE=str(conf), UV_INDEX="named=https://uvi.example/simple")
    told_uv = installer_environ("uv", env, False)
    assert told_uv["UV_INDEX_URL"] == "https://pip.example/simple/"
    assert told_uv["UV_EXTRA_INDEX_URL"] == "https://uvi.example/simple/ https://pe.example/s/"  # not the local one
    assert "UV_INDEX" not in told_uv and told_uv["PIP_CONFIG_FILE"] == str(conf)
    uv_default = env_for(tmp_path, UV_DEFAULT_INDEX="https://uvd.example/simple")
    told_pip = installer_environ("pip", uv_default, False)
    assert told_pip["PIP_INDEX_URL"] == "https://uvd.example/simple/" and "PIP_EXTRA_INDEX_URL" not in told_pip
    assert "UV_DEFAULT_INDEX" not in installer_environ("uv", uv_default, False)
    assert installer_environ("uv", env_for(tmp_path), False) == env_for(tmp_path)


def test_default_comes_from_pip(tmp_path: Path) -> None:
    config = load_index_config(None, (), env_for(tmp_path), False)
    assert config.urls == (default_index_url().rstrip("/") + "/",)
    assert config.urls[0].startswith("https://")


def test_no_pip_no_uv_and_no_index_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """uv is a dependency, so it cannot be uninstalled here: its absence is stood in for."""
    import abiguard.fix.resolver

    monkeypatch.setitem(sys.modules, "pip._internal.models.index", None)  # makes the import fail
    monkeypatch.setattr(abiguard.fix.resolver, "find_uv", lambda: None)
    with pytest.raises(PackageIndexError, match="pass --index-url"):
        load_index_config(None, (), env_for(tmp_path), False)
    assert load_index_config("https://idx.example/simple", (), env_for(tmp_path), False).urls


def test_only_local_indexes_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PackageIndexError, match="--index-url"):
        load_index_config("file:///srv/simple", (), env_for(tmp_path), False)


def test_credentials_never_in_notes(tmp_path: Path) -> None:
    config = load_index_config("https://u:topsecret@idx.example/simple", ["ftp://u:topsecret@x/simple"],
                               env_for(tmp_path), False)
    assert config.urls[0] == "https://u:topsecret@idx.example/simple/"  # kept for requests
    assert config.notes and all("topsecret" not in n for n in config.notes)


# --- listings --------------------------------------------------------------------------------------------------


def test_json_listing_records(server: WheelServer) -> None:
    base = listing(server, "demo", [
        entry("demo-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"),
        entry("demo-1.0.tar.gz"),
        entry("demo-1.1-cp311-cp311-win_amd64.whl", yanked="broken build", **{"core-metadata": {"sha256": "cd"}}),
        entry("demo-1.1.exe"),
    ])
    with HttpClient(timeout=5) as http:
        files = IndexClient(IndexConfig((base,)), http).files("Demo")
    by_name = {f.filename: f for f in files}
    assert set(by_name) == {"demo-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
                            "demo-1.0.tar.gz", "demo-1.1-cp311-cp311-win_amd64.whl"}
    wheel = by_name["demo-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"]
    assert wheel.url == f"{server.base}/ok/{wheel.filename}"
    assert wheel.sha256 == "ab" * 32 and wheel.size == 1234 and wheel.version == Version("1.0")
    assert wheel.upload_time == datetime(2024, 4, 10, 12, 0, 0, 123456, tzinfo=timezone.utc)
    assert Tag("cp311", "cp311", "manylinux2014_x86_64") in wheel.tags
    assert by_name["demo-1.1-cp311-cp311-win_amd64.whl"].yanked_reason == "broken build"
    assert by_name["demo-1.1-cp311-cp311-win_amd64.whl"].metadata and not wheel.metadata  # PEP 714
    assert not by_name["demo-1.0.tar.gz"].is_wheel


def test_gzip_listing(server: WheelServer) -> None:
    base = listing(server, "zipped", [entry(f"zipped-1.{i}-py3-none-any.whl") for i in range(100)], prefix="/gz")
    server.gzipped.add("/gz/zipped/")
    assert len(server.pages["/gz/zipped/"][1]) > 20_000
    with HttpClient(timeout=5) as http:
        files = IndexClient(IndexConfig((base,)), http).files("zipped")
        assert len(files) == 100
        assert http.counters.bytes_read < 5_000  # received compressed


def test_html_listing_and_merge(server: WheelServer) -> None:
    html = (b'<html><body><a href="/ok/mixed-2.0-py3-none-any.whl#sha256=ff00" data-requires-python="&gt;=3.8" '
            b'data-dist-info-metadata="sha256=ab">mixed-2.0-py3-none-any.whl</a>'
            b'<a href="/ok/mixed-1.0-py3-none-any.whl" data-yanked="" data-core-metadata="false">x</a>'
            b"</body></html>")
    server.pages["/html/mixed/"] = ("text/html", html)
    extra = listing(server, "mixed", [entry("mixed-3.0-py3-none-any.whl"), entry("mixed-2.0-py3-none-any.whl")],
                    prefix="/second")
    with HttpClient(timeout=5) as http:
        files = IndexClient(IndexConfig((f"{server.base}/html/", extra)), http).files("mixed")
    by_name = {f.filename: f for f in files}
    assert set(by_name) == {"mixed-1.0-py3-none-any.whl", "mixed-2.0-py3-none-any.whl", "mixed-3.0-py3-none-any.whl"}
    first = by_name["mixed-2.0-py3-none-any.whl"]
    assert first.sha256 == "ff00" and first.requires_python == ">=3.8" and first.size is None  # primary wins
    assert by_name["mixed-1.0-py3-none-any.whl"].yanked
    assert first.metadata and not by_name["mixed-1.0-py3-none-any.whl"].metadata  # PEP 658's name, and "false"


def test_find_links_locations(server: WheelServer, tmp_path: Path) -> None:
    """A directory's wheels and sdists, an HTML page's links (served or on disk); what cannot be read says where."""
    (tmp_path / "wh").mkdir()
    for name in ("demo-1.0-py3-none-any.whl", "demo-1.0.tar.gz", "notes.txt"):
        (tmp_path / "wh" / name).write_bytes(b"")
    page = b'<a href="/ok/demo-2.0-py3-none-any.whl#sha256=ff">demo</a><a href="other-1.0.tar.gz">o</a>'
    server.pages["/links/"] = ("text/html", page)
    (tmp_path / "links.html").write_bytes(page)
    with HttpClient(timeout=5) as http:
        local = find_links_files(str(tmp_path / "wh"), http)
        assert sorted(f.filename for f in local) == ["demo-1.0-py3-none-any.whl", "demo-1.0.tar.gz"]
        assert local[0].url.startswith("file://") and local[0].name == "demo"
        served = find_links_files(f"{server.base}/links/", http)
        assert [(f.filename, f.sha256) for f in served] == [("demo-2.0-py3-none-any.whl", "ff"),
                                                              ("other-1.0.tar.gz", None)]
        assert served[0].url == f"{server.base}/ok/demo-2.0-py3-none-any.whl"
        on_disk = find_links_files((tmp_path / "links.html").as_uri(), http)
        assert [f.filename for f in on_disk] == ["demo-2.0-py3-none-any.whl", "other-1.0.tar.gz"]
        with pytest.raises(PackageIndexError, match=r"^--find-links .*missing: cannot read: No such file"):
            find_links_files(str(tmp_path / "missing"), http)
        with pytest.raises(PackageIndexError, match=r"^--find-links .*/nowhere/: HTTP 404"):
            find_links_files(f"{server.base}/nowhere/", http)


def test_unknown_project(server: WheelServer) -> None:
    with HttpClient(timeout=5) as http, pytest.raises(ProjectNotFound, match="no-such-thing"):
        IndexClient(IndexConfig((f"{server.base}/simple/",)), http).files("no-such-thing")


def test_unreachable_index_is_one_clear_error() -> None:
    with HttpClient(timeout=1, retries=0) as http, pytest.raises(PackageIndexError) as info:
        IndexClient(IndexConfig(("http://u:hidden@127.0.0.1:9/simple/",)), http).files("x")
    assert "hidden" not in str(info.value) and "127.0.0.1:9" in str(info.value)


def test_basic_auth_listing(server: WheelServer) -> None:
    listing(server, "secret", [entry("secret-1.0-py3-none-any.whl")], prefix="/auth")
    port = server.httpd.server_address[1]
    good = f"http://{USER}:{PASSWORD}@127.0.0.1:{port}/auth/"
    with HttpClient(timeout=5, retries=0) as http:
        files = IndexClient(IndexConfig((good,)), http).files("secret")
        assert [f.filename for f in files] == ["secret-1.0-py3-none-any.whl"]
        with pytest.raises(PackageIndexError) as info:
            IndexClient(IndexConfig((good.replace(PASSWORD, "wrong-" + PASSWORD),)), http).files("secret")
    assert "401" in str(info.value) and PASSWORD not in str(info.value) and USER not in str(info.value)


# --- tags and selection ---------------------------------------------------------------------------------


def test_expand_manylinux() -> None:
    tags = expand_platform("manylinux_2_17_x86_64")
    assert tags[0] == "manylinux_2_17_x86_64" and tags[1] == "manylinux2014_x86_64"
    assert {"manylinux2010_x86_64", "manylinux1_x86_64", "manylinux_2_5_x86_64"} <= set(tags)
    assert tags[-1] == "linux_x86_64" and "manylinux_2_18_x86_64" not in tags
    assert expand_platform("manylinux2014_aarch64")[:2] == ["manylinux_2_17_aarch64", "manylinux2014_aarch64"]
    assert "manylinux1_aarch64" not in expand_platform("manylinux2014_aarch64")
    assert expand_platform("musllinux_1_2_x86_64") == ["musllinux_1_2_x86_64", "musllinux_1_1_x86_64",
                                                       "musllinux_1_0_x86_64", "linux_x86_64"]
    assert expand_platform("win_amd64") == ["win_amd64"]
    mac = expand_platform("macosx_11_0_arm64")
    assert mac[0] == "macosx_11_0_arm64" and "macosx_11_0_universal2" in mac


def test_target_tags() -> None:
    assert LINUX311[0] == Tag("cp311", "cp311", "manylinux_2_17_x86_64")
    assert Tag("cp311", "abi3", "manylinux2014_x86_64") in LINUX311
    assert Tag("py3", "none", "any") in LINUX311
    assert Tag("cp312", "cp312", "manylinux_2_17_x86_64") not in LINUX311
    assert target_tags() and target_tags(None, "win_amd64")[0].platform == "win_amd64"
    with pytest.raises(PackageIndexError, match=r"3\.11"):
        target_tags("three", None)
    with pytest.raises(PackageIndexError, match="names no known operating system"):
        target_tags("3.11", "bogus_platform")
    assert target_tags("3.11", "freebsd_14_0_release_amd64")[0].platform == "freebsd_14_0_release_amd64"


def make(filename: str, **kw: object) -> IndexFile:
    parsed = parse_file(filename, f"https://files.example/{filename}", kw, "https://idx.example/simple/")
    assert parsed is not None
    return parsed


def test_best_wheel() -> None:
    files = [
        make("p-1.0-cp311-cp311-manylinux_2_28_x86_64.whl"),
        make("p-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"),
        make("p-1.0-cp311-cp311-manylinux_2_5_x86_64.manylinux1_x86_64.whl"),
        make("p-1.0-cp311-abi3-manylinux_2_17_x86_64.whl"),
        make("p-1.0-py3-none-any.whl"),
        make("p-1.0-cp311-cp311-win_amd64.whl"),
        make("p-1.0.tar.gz"),
    ]
    best = best_wheel(files, LINUX311)
    assert best is not None and best.filename == "p-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
    assert best_wheel(files[4:5], LINUX311) == files[4]
    assert best_wheel(files[5:], LINUX311) is None
    tagged = [make("p-1.0-1-cp311-cp311-win_amd64.whl"), make("p-1.0-2-cp311-cp311-win_amd64.whl")]
    chosen = best_wheel(tagged, target_tags("3.11", "win_amd64"))
    assert chosen is not None and chosen.build == (2, "")


def test_releases_and_resolve() -> None:
    files = [
        make("p-1.0-cp311-cp311-win_amd64.whl"),
        make("p-1.1-cp311-cp311-manylinux2014_x86_64.whl", yanked=True),
        make("p-1.2-cp311-cp311-manylinux2014_x86_64.whl", **{"requires-python": ">=3.12"}),
        make("p-1.3-cp311-cp311-manylinux2014_x86_64.whl"),
        make("p-2.0rc1-cp311-cp311-manylinux2014_x86_64.whl"),
        make("p-2.0.tar.gz"),
    ]
    assert [str(r.version) for r in releases(files, LINUX311, "3.11")] == ["1.3"]
    assert [str(r.version) for r in releases(files, LINUX311, "3.11", prereleases=True, yanked=True)] == [
        "1.1", "1.3", "2.0rc1"]
    assert str(resolve(files, "p", LINUX311, "3.11").version) == "1.3"
    assert resolve(files, "p==1.1", LINUX311, "3.11").yanked  # a pinned yanked release is allowed
    assert str(resolve(files, "p>=2.0rc1", LINUX311, "3.11").version) == "2.0rc1"
    with pytest.raises(NoMatchingWheel, match=r"1\.0 has wheels for other platforms or Pythons only"):
        resolve(files, "p==1.0", LINUX311, "3.11", "Linux")
    with pytest.raises(NoMatchingWheel, match=r"p==2\.0 for this target \(2\.0 has only an sdist\)$"):
        resolve(files, "p==2.0", LINUX311, "3.11")
    with pytest.raises(PackageIndexError, match="matches"):
        resolve(files, "p==9", LINUX311, "3.11")
    with pytest.raises(PackageIndexError, match="invalid requirement"):
        resolve(files, "p (>=", LINUX311, "3.11")


# --- the real index ------------------------------------------------------------------------------------


@pytest.mark.network
def test_real_index_listing() -> None:
    config = load_index_config(None, (), {"HOME": "/nonexistent"}, False)
    with HttpClient() as http:
        files = IndexClient(config, http).files("pandas")
    release = resolve(files, "pandas==2.0.3", LINUX311, "3.11")
    assert release.wheel.filename == "pandas-2.0.3-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
    assert release.wheel.size and release.wheel.sha256 and release.wheel.upload_time
    assert release.wheel.upload_time.year == 2023


def test_the_default_index_is_known_without_pip(monkeypatch: pytest.MonkeyPatch) -> None:
    """Installed with `uv tool install`, abiguard has no pip to ask: uv names the same default index."""
    from_pip = default_index_url()
    monkeypatch.setitem(sys.modules, "pip", None)  # what `import pip` meets where it is not installed
    monkeypatch.setitem(sys.modules, "pip._internal", None)
    monkeypatch.setitem(sys.modules, "pip._internal.models.index", None)
    assert default_index_url() == from_pip

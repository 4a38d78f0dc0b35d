"""Markdown and SARIF hold whatever text a report carries: bytes read out of a binary, a path with spaces, a
version with a `|`. Parsed by a real Markdown parser (markdown-it-py, which rich brings) and checked as SARIF.
The report is made by hand because no real binary carries such text; real reports are tested in test_check."""

from __future__ import annotations

from markdown_it import MarkdownIt

from abiguard.model import (
    BinaryFacts,
    BinaryFinding,
    BuiltFor,
    CheckReport,
    DistributionFinding,
    Evidence,
    TargetEnvironment,
    Verdict,
    Verification,
)
from abiguard.report.markdown import render_markdown
from abiguard.report.markup import PlainOut
from abiguard.report.sarif import sarif_document
from tests.support.sarif import artifact_path, assert_valid_sarif

HOSTILE = "a|b `tick` ``two`` </details><script>x</script> *star* _u_ [l](j:x) \\"


def _report(site: str) -> CheckReport:
    env = TargetEnvironment(executable="/env/bin/python", python_version="3.11.7", implementation="cpython",
                            prefix="/env", site_packages=(site,), platform="linux-x86_64", ext_suffixes=(".so",))
    facts = BinaryFacts("elf", BuiltFor.NUMPY1, evidence=(Evidence("R4", 16, HOSTILE),))
    binary = BinaryFinding(path="odd pkg/m o d.so", module=None, facts=facts, verdict=Verdict.BROKEN,
                           consequence=HOSTILE, root=site)
    dist = DistributionFinding("odd-pkg", "1.0", Verdict.BROKEN, (binary,), numpy_requirement="numpy>=1")
    return CheckReport(environment=env, numpy="2.0.2", numpy_installed="2.0.2", hypothetical=False,
                       distributions=(dist,), unowned=(), declared=())


def test_markdown_keeps_hostile_text_literal() -> None:
    md = render_markdown(_report("/env/site packages"))
    tokens = MarkdownIt("commonmark").enable("table").parse(md)
    html = MarkdownIt("commonmark").enable("table").render(md)
    rows = [t for t in tokens if t.type == "tr_open"]
    cells = [t for t in tokens if t.type in ("td_open", "th_open")]
    assert len(rows) == 2 and len(cells) == 8  # the `|` in the text split no cell
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert html.count("<details>") == 1 and html.count("</details>") == 1  # the text closed nothing
    assert "<em>" not in html and "<a " not in html  # *star*, _u_ and the link stayed text
    body = tokens[[t.type for t in tokens].index("tbody_open"):]
    consequence = [t for t in body if t.type == "inline"][3]  # the fourth cell of the row
    assert "".join(c.content for c in consequence.children or []) == HOSTILE


def test_sarif_locations_resolve_with_spaces_in_paths() -> None:
    doc = sarif_document(_report("/env/site packages"))
    (result,) = assert_valid_sarif(doc)
    (location,) = result["locations"]
    assert str(artifact_path(doc, location)) == "/env/site packages/odd pkg/m o d.so"
    assert HOSTILE in result["message"]["text"]


def test_a_refuted_prediction_is_shown_whole_in_a_pipe() -> None:
    """A table cut to 80 columns hid the module names that a bug report needs."""
    import io
    from dataclasses import replace

    from abiguard.report.text import render_check

    report = _report("/env/site-packages")
    module = "package.with.a.rather.long.dotted.name.that.a.narrow.table.would.cut._extension_module"
    verified = Verification("ok", None, confirms=False)
    (dist,) = report.distributions
    binary = replace(dist.binaries[0], module=module, verified=verified)
    report = replace(report, distributions=(replace(dist, binaries=(binary,)),))
    stream = io.StringIO()
    render_check(report, PlainOut(stream))
    assert f"  odd-pkg {module}: predicted broken, observed ok" in stream.getvalue().splitlines()

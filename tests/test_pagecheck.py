"""The browser check reports what a reader would see broken, and passes a clean page."""

from bnlib import pagecheck

PAGE = """<!DOCTYPE html><html><head><title>t</title></head><body>
<main><article class="bd-article" style="width: 600px">{body}</article></main></body></html>"""


def check(tmp_path, body: str) -> list[str]:
    (tmp_path / "page.html").write_text(PAGE.format(body=body))
    return pagecheck.check(tmp_path)["page.html"]


def test_a_clean_page_passes(tmp_path):
    assert check(tmp_path, "<p>BatchNorm lowers the loss.</p><table><tr><td>1</td></tr></table>") == []


def test_broken_pages_are_reported(tmp_path):
    found = check(tmp_path, "<p>the formula $\\alpha = 1$ and {glue:text}`key`</p>"
                            '<img src="missing.png"><table style="width: 900px"><tr><td>wide</td></tr></table>'
                            "<script>undefinedFunction()</script>")
    text = "\n".join(found)
    for expected in ("literal $", "literal {glue", "missing image: missing.png", "too wide: table 900 px",
                     "JavaScript error"):
        assert expected in text, text


def test_a_wide_table_that_scrolls_inside_the_column_passes(tmp_path):
    assert check(tmp_path, '<div style="overflow-x: auto"><table style="width: 900px"><tr><td>x</td></tr>'
                           "</table></div>") == []


def test_a_missing_anchor_is_reported(tmp_path):
    (tmp_path / "other.html").write_text(PAGE.format(body='<section id="there">x</section>'))
    found = check(tmp_path, '<a href="other.html#there">ok</a> <a href="other.html#nowhere">bad</a>')
    assert found == ["broken link: other.html#nowhere"]


def _png(tmp_path, name: str, width: int) -> str:
    """A blank ``width`` x 10 PNG written beside the page (matplotlib draws it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(width / 100, 0.1), dpi=100)
    fig.savefig(tmp_path / name)
    plt.close(fig)
    return name


def test_a_figure_shrunk_to_fit_the_column_is_reported(tmp_path):
    wide, fits = _png(tmp_path, "wide.png", 1200), _png(tmp_path, "fits.png", 600)
    found = check(tmp_path, f'<div class="cell_output"><img src="{wide}" style="max-width: 100%; width: 1000px">'
                            f'<img src="{fits}" style="max-width: 100%; width: 590px"></div>')
    assert len(found) == 1 and found[0].startswith("figure shrunk to 60% (1000 px wide, drawn at 600 px)"), found

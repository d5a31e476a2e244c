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

"""Local Sphinx extension: the book's stylesheet, click-to-enlarge figures, and two fixes to Jupyter Book 1.x's theme
that a browser reports as errors on every page (sphinx-thebe's config script emitted twice,
"const THEBE_JS_URL" declared twice; an empty default colour mode)."""

from __future__ import annotations


def _page_fixes(app, pagename, templatename, context, doctree) -> None:
    seen, kept = set(), []
    for js in context.get("script_files", []):
        key = (getattr(js, "filename", js) or "", getattr(js, "attributes", {}).get("body", ""))
        if key not in seen:
            seen.add(key)
            kept.append(js)
    context["script_files"] = kept
    # The figures are drawn on white: the book opens in light mode (the reader can switch).
    context.setdefault("default_mode", "light")


def setup(app):
    app.connect("html-page-context", _page_fixes, priority=900)  # after every other handler
    app.add_css_file("bnlib.css")
    app.add_js_file("enlarge.js", defer="defer")
    return {"parallel_read_safe": True, "parallel_write_safe": True}

"""The summary block's CSS and its one inline script: constants, never built from data.

pytest-html renders the summary block unescaped (Jinja `|safe`), so its one inline script runs:
that script is a constant, reads its data from the DOM (numbers in `data-k*` attributes that
`samples.py` formats), and never receives text from a model or an eval set.
"""

from __future__ import annotations

_STYLE = """
<style>
.tg h2 { margin-top: 1.2em; } .tg table { border-collapse: collapse; margin: 0.5em 0 1em; }
.tg td, .tg th { border: 1px solid #ccc; padding: 3px 8px; text-align: left; font-size: 13px; }
.tg .pass { color: #1b7f3b; font-weight: bold; } .tg .fail { color: #b00020; font-weight: bold; }
.tg img { max-width: 100%; border: 1px solid #eee; }
.tg-sample pre { white-space: pre-wrap; background: #f7f7f7; padding: 6px; margin: 2px 0 8px; }
</style>
"""
# The summary's own additions; every class is tg-prefixed so pytest-html's CSS and app.js
# (which bind .sortable, .filter, .hidden, .collapsible) never touch them.
_SUMMARY_STYLE = """
<style>
.tg { color: #222; font-size: 13px; max-width: 1400px; }
.tg td, .tg th { vertical-align: top; }
.tg code { font-size: 12px; background: #f3f3f3; padding: 0 3px; }
.tg .tg-headline { font-size: 14px; }
.tg .tg-banner { font-size: 18px; font-weight: bold; padding: 8px 12px; margin: 0.6em 0; border-radius: 3px; color: #fff; }
.tg .tg-banner.pass { background: #1b7f3b; color: #fff; } .tg .tg-banner.fail { background: #b00020; color: #fff; }
.tg .tg-banner.none { background: #777; }
.tg .tg-evidence { white-space: pre-wrap; }
.tg .tg-caption { color: #444; margin: 0.2em 0 0.4em; max-width: 1000px; }
.tg .tg-controls { margin: 0.4em 0; display: flex; gap: 12px; align-items: center; flex-wrap: wrap; }
.tg .tg-controls input[type=search] { width: 22em; }
.tg .tg-scroll { max-height: 80vh; overflow: auto; border: 1px solid #ddd; }
.tg .tg-samples table { table-layout: fixed; width: 100%; min-width: 1100px; margin: 0; }
.tg .tg-samples thead th { position: sticky; top: 0; background: #f0f0f0; z-index: 1; }
.tg .tg-text { max-height: 9em; overflow: auto; white-space: pre-wrap; overflow-wrap: anywhere;
  font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12px; }
.tg .tg-scores { margin-top: 4px; font-size: 12px; color: #333; }
.tg .tg-scores .tg-primary { font-weight: bold; }
.tg .tg-truncated { color: #b00020; font-size: 12px; }
.tg tr.tg-worst > td { background: #fff1f1; } .tg tr.tg-worst > td:first-child { border-left: 4px solid #b00020; }
.tg .tg-badge { display: inline-block; background: #b00020; color: #fff; border-radius: 3px; padding: 0 4px;
  font-size: 11px; white-space: nowrap; margin-top: 2px; }
.tg .tg-badge.tg-vs-baseline { background: #6a1b9a; }
.tg .tg-up { color: #1b7f3b; } .tg .tg-down { color: #b00020; font-weight: bold; }
</style>
"""
# Images: handlers set here, so a headless `--dump-dom` shows data-loaded="1" or "error" on each
# (an inline data: image may finish before the script runs, hence the `complete` check).
# Samples table: rows are sorted and filtered in place from their numeric data-k<i> attributes;
# one pass per action (sort, then one DocumentFragment append), so 500+ rows stay fast.
# Everything sits in one function, because pytest-html's own script shares the page's top-level scope.
_SCRIPT = r"""
(function () {
  'use strict';
  var root = (document.currentScript && document.currentScript.parentNode) || document;
  Array.prototype.forEach.call(root.querySelectorAll('img'), function (img) {
    var ok = function () { img.setAttribute('data-loaded', '1'); };
    var bad = function () { img.setAttribute('data-loaded', 'error'); };
    img.onload = ok;
    img.onerror = bad;
    if (img.complete) { if (img.naturalWidth > 0) { ok(); } else { bad(); } }
  });
  Array.prototype.forEach.call(root.querySelectorAll('.tg-samples'), function (box) {
    var tbody = box.querySelector('tbody');
    var rows = Array.prototype.slice.call(tbody.rows);
    var select = box.querySelector('select.tg-sort');
    var reverse = box.querySelector('button.tg-reverse');
    var filter = box.querySelector('input.tg-filter');
    var marked = box.querySelector('input.tg-only-marked');
    var count = box.querySelector('.tg-count');
    var texts = null;
    var descending = false;
    var key = function (row, k) {
      var v = row.getAttribute('data-k' + k);
      return v === null || v === '' ? NaN : parseFloat(v);
    };
    var sort = function () {
      var k = select.value;
      var sign = descending ? -1 : 1;
      var keyed = rows.map(function (row, i) { return [key(row, k), i, row]; });
      keyed.sort(function (x, y) {
        var xn = isNaN(x[0]), yn = isNaN(y[0]);
        if (xn || yn) { return xn === yn ? x[1] - y[1] : (xn ? 1 : -1); }
        return x[0] === y[0] ? x[1] - y[1] : sign * (x[0] - y[0]);
      });
      var fragment = document.createDocumentFragment();
      keyed.forEach(function (entry) { fragment.appendChild(entry[2]); });
      tbody.appendChild(fragment);
      reverse.textContent = descending ? 'highest first (click to reverse)' : 'lowest first (click to reverse)';
    };
    var apply = function () {
      var query = filter.value.trim().toLowerCase();
      if (query && texts === null) { texts = rows.map(function (row) { return row.textContent.toLowerCase(); }); }
      var shown = 0;
      rows.forEach(function (row, i) {
        var show = (!query || texts[i].indexOf(query) !== -1) &&
          (!marked.checked || row.classList.contains('tg-worst'));
        row.style.display = show ? '' : 'none';
        if (show) { shown += 1; }
      });
      count.textContent = shown + ' of ' + rows.length + ' samples shown';
    };
    var timer = null;
    select.addEventListener('change', function () { descending = false; sort(); });
    reverse.addEventListener('click', function () { descending = !descending; sort(); });
    filter.addEventListener('input', function () { clearTimeout(timer); timer = setTimeout(apply, 150); });
    marked.addEventListener('change', apply);
    box.setAttribute('data-ready', '1');
    apply();
  });
})();
"""


def summary_script() -> str:
    """The summary block's one inline script (image load markers, samples-table sort and filter).

    It acts on the element that contains it, so it belongs at the end of that block, after the
    images and the samples table: `summary_html` places it there.
    """
    return f"<script>{_SCRIPT}</script>"

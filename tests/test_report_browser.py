"""report.html opened in a real headless browser (Debian's chromium), checked from inside it.

A copy of the page gets a probe script as the first thing in <head>: it records console
errors, uncaught exceptions, CSP violations, alert() calls and non-data: fetches, and on load
writes them, with every image's load state, into an attribute of <body>; `--dump-dom` hands
that back. chromium's own console log (stderr) is checked too, and screenshots at laptop and
phone width must be real pictures. chromium missing is a failure under CI (where
scripts/ensure-chromium.sh installs it) and a skip, with one line saying how to enable it, on
a workstation.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import required_tool
from tests.report_records import EVIL, Rendered

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--virtual-time-budget=10000"]

PROBE = """<script>
window.__errs=[];window.__alerts=[];
window.alert=function(m){__alerts.push(String(m));};
window.addEventListener('error',function(e){__errs.push('error: '+(e.message||
 ('resource '+(e.target&&e.target.tagName))));},true);
window.addEventListener('securitypolicyviolation',function(e){
 __errs.push('csp: '+e.violatedDirective+' '+e.blockedURI);});
['error','warn'].forEach(function(k){var o=console[k];console[k]=function(){
 __errs.push('console.'+k+': '+Array.prototype.join.call(arguments,' '));
 return o.apply(console,arguments);};});
function col(t,i){return Array.prototype.map.call(t.tBodies[0].rows,function(r){
 var c=r.cells[i];
 return c.hasAttribute('data-sort')?parseFloat(c.getAttribute('data-sort')):null;});}
window.addEventListener('load',function(){
 var imgs=Array.prototype.slice.call(document.images);
 var t=document.querySelector('#leaderboard ~ .scroll table.sortable')||
  document.querySelector('table.sortable');
 var ths=Array.prototype.slice.call(t.tHead.rows[0].cells);
 var i=ths.findIndex(function(th){return th.textContent.indexOf('test acc')===0;});
 ths[i].click();var asc=col(t,i);ths[i].click();var desc=col(t,i);
 document.body.setAttribute('data-check',JSON.stringify({
  images:imgs.length,
  broken:imgs.filter(function(m){return !(m.complete&&m.naturalWidth>0);}).map(function(m){
   return m.alt;}),
  errors:__errs,alerts:__alerts,
  fetches:performance.getEntriesByType('resource').map(function(e){return e.name;})
   .filter(function(n){return n.indexOf('data:')!==0;}),
  scriptAsText:document.body.textContent.indexOf(%s)>=0,
  asc:asc,desc:desc,sortHeader:ths[i].getAttribute('aria-sort'),
  pageWidth:document.documentElement.scrollWidth,viewport:window.innerWidth}));
});
</script>
"""


@pytest.fixture(autouse=True, scope="module")
def _has_chromium() -> None:
    """Checked before anything is rendered, so a skip costs nothing."""
    if not os.access(CHROMIUM, os.X_OK):
        required_tool(f"{CHROMIUM} is missing: enable the browser test with `sudo make browser` "
                      "(or sudo apt-get install chromium)")


def _chromium() -> str:
    return CHROMIUM


def _run(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_chromium(), *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120)


def _probe(report: Path, tmp: Path, width: int) -> tuple[dict[str, Any], str]:
    page = tmp / "probed.html"
    # '</script>' inside the probe would end it early; '<\/' is the same string to JS
    probe = PROBE % json.dumps(EVIL).replace("</", "<\\/")
    page.write_text(report.read_text().replace("<head>\n", "<head>\n" + probe, 1))
    p = _run(["--enable-logging=stderr", "--v=0", f"--window-size={width},900",
              "--dump-dom", page.as_uri()], tmp / f"profile-{width}")
    m = re.search(r'<body data-check="([^"]*)"', p.stdout)
    assert m, f"the probe did not report (rc {p.returncode}):\n{p.stderr[-3000:]}"
    return json.loads(html.unescape(m.group(1))), p.stderr


@pytest.fixture(scope="module")
def probed(rendered_report: Rendered, tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("browser")
    return {w: _probe(rendered_report.html, tmp, w) for w in (1280, 390)}


def test_no_console_errors_and_every_image_loaded(probed: Any,
                                                  rendered_report: Rendered) -> None:
    n_figures = len(re.findall(r"^!\[", rendered_report.md.read_text(), flags=re.M))
    for width, (check, stderr) in probed.items():
        assert check["errors"] == [], (width, check["errors"])
        assert check["images"] == n_figures >= 9
        assert check["broken"] == []
        assert check["fetches"] == []  # nothing but data: URIs
        console = [ln for ln in stderr.splitlines() if ":CONSOLE" in ln]
        assert console == [], console


def test_script_in_a_description_is_text(probed: Any) -> None:
    check, _ = probed[1280]
    assert check["scriptAsText"] and check["alerts"] == []


def test_tables_sort_by_click(probed: Any) -> None:
    check, _ = probed[1280]
    asc = [v for v in check["asc"] if v is not None]
    desc = [v for v in check["desc"] if v is not None]
    assert len(asc) >= 2 and asc == sorted(asc) and desc == sorted(desc, reverse=True)
    assert check["sortHeader"] == "descending"


def test_phone_width_has_no_page_overflow(probed: Any) -> None:
    check, _ = probed[390]
    assert check["pageWidth"] <= check["viewport"], check  # wide tables scroll in their box


@pytest.mark.parametrize("width", [1280, 390])
def test_screenshot_is_a_real_page(rendered_report: Rendered, tmp_path: Path,
                                   width: int) -> None:
    from PIL import Image

    shot = tmp_path / f"report-{width}.png"
    _run([f"--window-size={width},2400", f"--screenshot={shot}",
          rendered_report.html.as_uri()], tmp_path / "profile")
    assert shot.is_file() and shot.stat().st_size > 30_000
    img = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert img.shape == (2400, width)
    dark = (img < 128).mean()  # text and figure ink
    assert 0.005 < dark < 0.5 and img.std() > 20
    keep = os.environ.get("REPORT_SCREENSHOT_DIR")
    if keep:
        shutil.copy(shot, Path(keep) / shot.name)

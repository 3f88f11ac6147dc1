"""Document → one self-contained HTML file: inline CSS/JS, figures as data URIs, all escaped.

A Content-Security-Policy forbids every fetch except data: images, so the page provably works
offline; the only script makes tables sortable by clicking a header.
"""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path

from report.doc import (
    Block,
    Bullets,
    Code,
    CodeBlock,
    Figure,
    Heading,
    Inline,
    Link,
    Para,
    Section,
    Strong,
    Table,
    Text,
)

CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
       "script-src 'unsafe-inline'; base-uri 'none'; form-action 'none'")

CSS = """
:root{--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--bg:#fff;--alt:#f6f8fa;--acc:#0969da}
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:var(--fg);background:var(--bg)}
main{max-width:1200px;margin:0 auto;padding:1rem;overflow-wrap:break-word}
h1{font-size:1.8rem;margin:.5rem 0 1rem}
h2{font-size:1.4rem;border-bottom:1px solid var(--line);padding-bottom:.3rem;margin-top:2.2rem}
h3{font-size:1.15rem;margin-top:1.6rem}
h4{font-size:1rem;margin-top:1.2rem}
code{font:.88em/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;
background:var(--alt);padding:.1em .3em;border-radius:4px;overflow-wrap:anywhere}
pre{background:var(--alt);padding:.8rem;border-radius:6px;overflow-x:auto}
pre code{background:none;padding:0;overflow-wrap:normal}
nav ol{padding-left:1.4rem;columns:2 14rem}
a{color:var(--acc)}
.scroll{overflow-x:auto;margin:.8rem 0;-webkit-overflow-scrolling:touch}
table{border-collapse:collapse;font-size:.88rem;min-width:50%}
th,td{border:1px solid var(--line);padding:.3rem .5rem;vertical-align:top}
th{background:var(--alt);text-align:left;position:sticky;top:0}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.w{min-width:18rem}
tr:nth-child(even) td{background:#fbfcfd}
table.sortable th{cursor:pointer;user-select:none}
table.sortable th[aria-sort=ascending]::after{content:" ▲"}
table.sortable th[aria-sort=descending]::after{content:" ▼"}
caption{caption-side:bottom;text-align:left;color:var(--muted);font-size:.85rem;padding:.3rem 0}
figure{margin:1rem 0}
figure img{max-width:100%;height:auto;border:1px solid var(--line);border-radius:4px}
figcaption{color:var(--muted);font-size:.9rem}
@media (max-width:600px){body{font-size:15px}main{padding:.6rem}
th,td{padding:.25rem .35rem}h1{font-size:1.45rem}}
"""

SORT_JS = """
(function(){
function key(td){var s=td.getAttribute('data-sort');if(s===null)return td.textContent;
 var f=parseFloat(s);return isNaN(f)?s:f;}
function cmp(a,b){var na=typeof a==='number',nb=typeof b==='number';
 if(na&&nb)return a-b;if(na)return -1;if(nb)return 1;return String(a).localeCompare(String(b));}
document.querySelectorAll('table.sortable').forEach(function(t){
 t.querySelectorAll('thead th').forEach(function(th,i){
  th.tabIndex=0;
  function go(){var asc=th.getAttribute('aria-sort')!=='ascending';
   t.querySelectorAll('thead th').forEach(function(h){h.removeAttribute('aria-sort');});
   th.setAttribute('aria-sort',asc?'ascending':'descending');
   var body=t.tBodies[0],rows=Array.prototype.slice.call(body.rows);
   rows.sort(function(r1,r2){var a=key(r1.cells[i]),b=key(r2.cells[i]);
    var ea=r1.cells[i].hasAttribute('data-empty'),eb=r2.cells[i].hasAttribute('data-empty');
    if(ea!==eb)return ea?1:-1;var c=cmp(a,b);return asc?c:-c;});
   rows.forEach(function(r){body.appendChild(r);});}
  th.addEventListener('click',go);
  th.addEventListener('keydown',function(e){if(e.key==='Enter')go();});
 });
});
})();
"""


def inline(part: Inline) -> str:
    if isinstance(part, Code):
        return f"<code>{escape(part.text)}</code>"
    if isinstance(part, Strong):
        return f"<strong>{escape(part.text)}</strong>"
    if isinstance(part, Link):
        return f'<a href="{escape(part.href)}">{escape(part.text)}</a>'
    return escape(part)


def render_text(parts: Text) -> str:
    return "".join(inline(p) for p in parts)


def _table(t: Table) -> str:
    num = [i < len(t.numeric) and t.numeric[i] for i in range(len(t.headers))]
    cls = ' class="sortable"' if t.sortable else ""
    head = "".join(f'<th scope="col"{" class=n" if num[i] else ""}>{escape(h)}</th>'
                   for i, h in enumerate(t.headers))
    rows = []
    for row in t.rows:
        tds = []
        for i, c in enumerate(row):
            attrs = ' class="n"' if num[i] else (' class="w"' if len(c.text) > 60 else "")
            if c.sort is not None:
                attrs += f' data-sort="{escape(str(c.sort))}"'
            elif num[i]:
                attrs += " data-empty"
            tds.append(f"<td{attrs}>{escape(c.text)}</td>")
        rows.append("<tr>" + "".join(tds) + "</tr>")
    cap = f"<caption>{escape(t.caption)}</caption>" if t.caption else ""
    return (f'<div class="scroll"><table{cls}>{cap}<thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def _figure(f: Figure, out_dir: Path) -> str:
    data = base64.b64encode((out_dir / f.path).read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{escape(f.alt)}" '
            f'loading="eager"><figcaption>{escape(f.caption)}</figcaption></figure>')


def block(b: Block, out_dir: Path) -> str:
    if isinstance(b, Heading):
        return f'<h{b.level} id="{escape(b.anchor)}">{escape(b.title)}</h{b.level}>'
    if isinstance(b, Para):
        return f"<p>{render_text(b.parts)}</p>"
    if isinstance(b, Bullets):
        return "<ul>" + "".join(f"<li>{render_text(i)}</li>" for i in b.items) + "</ul>"
    if isinstance(b, Table):
        return _table(b)
    if isinstance(b, Figure):
        return _figure(b, out_dir)
    if isinstance(b, CodeBlock):
        return f"<pre><code>{escape(b.code.rstrip())}</code></pre>"
    raise TypeError(f"unknown block {type(b).__name__}")


def to_html(title: str, intro: list[Block], sections: list[Section], out_dir: Path) -> str:
    nav = "".join(f'<li><a href="#{escape(s.anchor)}">{escape(s.title)}</a></li>'
                  for s in sections)
    body = [f"<h1>{escape(title)}</h1>"] + [block(b, out_dir) for b in intro]
    body.append(f'<nav aria-label="Contents"><ol>{nav}</ol></nav>')
    for i, sec in enumerate(sections, 1):
        body.append(f'<section><h2 id="{escape(sec.anchor)}">{i}. {escape(sec.title)}</h2>')
        body += [block(b, out_dir) for b in sec.blocks]
        body.append("</section>")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n"
        + "\n".join(body)
        + f"\n</main>\n<script>{SORT_JS}</script>\n</body>\n</html>\n"
    )

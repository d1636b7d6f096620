"""``steptrace view``: one self-contained HTML page with a waterfall of a run's spans.

No network: styles and script are inline, and a Content-Security-Policy forbids every fetch.
Everything taken from the log is escaped: rows are rendered here with ``html.escape``, span
details travel as JSON inside a non-executable script tag (with ``<``, ``>``, ``&`` escaped) and
the page's script only ever sets ``textContent``. The CSP allows just that one script, by hash,
so even markup that slipped through could not run.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from steptrace._where import where_text
from steptrace.analysis._agents import agents_line, handoff_text, with_agent
from steptrace.analysis._debug import format_ms, span_label, token_text
from steptrace.analysis._logs import log_line, tree_with_logs
from steptrace.analysis._runs import Record, Run
from steptrace.analysis._transcript import transcript

_TYPE_CLASSES = {
    "run": "t-run",
    "agent_step": "t-agent_step",
    "llm_call": "t-llm_call",
    "tool_call": "t-tool_call",
}
_CONTENT_FIELDS = ("input", "output", "system_instructions", "error_stack")

_STYLE = """
:root { font: 13px/1.4 system-ui, sans-serif; color: #1d1d1f; }
body { margin: 16px; }
h1 { font-size: 18px; margin: 0 0 4px; }
.meta { color: #555; margin-bottom: 12px; }
.meta b { color: #1d1d1f; }
.legend span { display: inline-block; margin-right: 14px; }
.legend i { display: inline-block; width: 12px; height: 12px; border-radius: 2px;
  vertical-align: middle; margin-right: 4px; }
.waterfall { border: 1px solid #ddd; border-radius: 4px; margin-top: 8px; }
.axis, .row { display: grid; grid-template-columns: 340px 1fr; }
.axis { border-bottom: 1px solid #ddd; background: #fafafa; height: 22px; }
.axis .track { position: relative; }
.tick { position: absolute; top: 3px; font-size: 11px; color: #777; white-space: nowrap;
  transform: translateX(-50%); }
.tick.first { transform: none; } .tick.last { transform: translateX(-100%); }
.row { cursor: pointer; border-bottom: 1px solid #f0f0f0; min-height: 24px; }
.row:hover, .row:focus { background: #eef4ff; outline: none; }
.row.selected { background: #dce8ff; }
.label { padding: 3px 8px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.label .step { color: #888; display: inline-block; min-width: 34px; }
.track { position: relative; margin-right: 12px; overflow: hidden; }
.bar { position: absolute; top: 5px; height: 14px; border-radius: 3px; min-width: 2px; }
.bar-text { position: absolute; top: 4px; font-size: 11px; color: #333; white-space: nowrap;
  padding-left: 4px; }
.bar-text.inside { color: #fff; text-shadow: 0 0 3px rgba(0,0,0,.7); padding-left: 6px; }
.t-run { background: #8e8e93; } .t-agent_step { background: #5e5ce6; }
.t-llm_call { background: #0a84ff; } .t-tool_call { background: #30b158; }
.t-span { background: #ff9f0a; }
.t-log { background: #aeaeb2; min-width: 2px; } .t-log.warn { background: #ff9f0a; }
.bar.error { background-image: repeating-linear-gradient(45deg, transparent 0 4px,
  rgba(255,255,255,.45) 4px 8px); outline: 2px solid #d70015; }
.err { color: #d70015; font-weight: 600; }
.handoff { color: #5e5ce6; font-weight: 600; }
#detail { margin-top: 14px; border: 1px solid #ddd; border-radius: 4px; padding: 10px; }
#detail h2 { font-size: 15px; margin: 0 0 8px; }
#detail h3 { font-size: 13px; margin: 10px 0 4px; }
#detail pre { background: #f6f6f6; padding: 8px; margin: 0; white-space: pre-wrap;
  word-break: break-word; max-height: 360px; overflow: auto; }
.hint { color: #777; }
.transcript { display: flex; flex-direction: column; gap: 6px; }
.msg { border-radius: 6px; padding: 6px 8px; max-width: 85%; background: #f2f2f7; }
.msg .role { font-size: 11px; font-weight: 600; text-transform: uppercase; color: #666; }
.msg .text { white-space: pre-wrap; word-break: break-word; }
.msg .reasoning { color: #666; font-style: italic; }
.role-system { background: #fff8e1; } .role-user { background: #e8f0fe; align-self: flex-end; }
.role-assistant { background: #f2f2f7; } .role-tool { background: #e9f7ef; }
.call, .result { margin-top: 4px; } .call-id { color: #888; font-size: 11px; }
.answer-rule { font-size: 11px; color: #888; border-top: 1px solid #ddd; padding-top: 2px; }
details.attributes { margin-top: 10px; } details.attributes summary { cursor: pointer; font-weight: 600; }
"""

# Reads the span data as JSON and shows it with textContent only: never innerHTML, never eval.
_SCRIPT = """
(function () {
  var data = JSON.parse(document.getElementById("steptrace-data").textContent);
  var detail = document.getElementById("detail");
  function block(title, value) {
    var h = document.createElement("h3");
    h.textContent = title;
    var pre = document.createElement("pre");
    pre.textContent = typeof value === "string" ? value : JSON.stringify(value, null, 2);
    detail.appendChild(h);
    detail.appendChild(pre);
  }
  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function conversation(turns) {
    var box = el("div", "transcript");
    var answered = false;
    for (var t = 0; t < turns.length; t++) {
      var turn = turns[t];
      if (turn.output && !answered) { box.appendChild(el("div", "answer-rule", "answer")); answered = true; }
      var msg = el("div", "msg role-" + (/^[a-z]+$/.test(turn.role) ? turn.role : "other"));
      msg.appendChild(el("div", "role", turn.role));
      for (var i = 0; i < turn.items.length; i++) {
        var item = turn.items[i];
        if (item.kind === "tool_call") {
          var call = el("div", "call");
          call.appendChild(el("b", "", "\u2192 " + item.name));
          call.appendChild(el("span", "call-id", " " + (item.call_id || "no id")));
          call.appendChild(el("pre", "", item.text));
          msg.appendChild(call);
        } else if (item.kind === "tool_result") {
          var result = el("div", "result");
          result.appendChild(el("b", "", "\u2190 " + (item.name || "tool")));
          result.appendChild(el("span", "call-id", " " + (item.call_id || "no id")));
          result.appendChild(el("pre", "", item.text));
          msg.appendChild(result);
        } else {
          msg.appendChild(el("div", item.kind === "reasoning" ? "text reasoning" : "text", item.text));
        }
      }
      box.appendChild(msg);
    }
    detail.appendChild(box);
  }
  function show(row) {
    var span = data.spans[Number(row.getAttribute("data-index"))];
    var selected = document.querySelectorAll(".row.selected");
    for (var i = 0; i < selected.length; i++) selected[i].classList.remove("selected");
    row.classList.add("selected");
    while (detail.firstChild) detail.removeChild(detail.firstChild);
    var h = document.createElement("h2");
    h.textContent = span.title;
    detail.appendChild(h);
    if (span.raised_at) block("Raised at", span.raised_at);
    if (span.stack) block("Stack", span.stack);
    if (span.transcript) {
      conversation(span.transcript);
    } else {
      if (span.system !== null && span.system !== undefined) block("System instructions", span.system);
      if (span.input !== null && span.input !== undefined) block("Input", span.input);
      if (span.output !== null && span.output !== undefined) block("Output", span.output);
    }
    var more = el("details", "attributes");
    more.appendChild(el("summary", "", "Attributes"));
    more.appendChild(el("pre", "", JSON.stringify(span.attributes, null, 2)));
    // Open when there is nothing else to read (a log line, a step): one click away otherwise.
    if (!span.transcript && span.input == null && span.output == null) more.open = true;
    detail.appendChild(more);
  }
  var rows = document.querySelectorAll(".row");
  for (var i = 0; i < rows.length; i++) {
    rows[i].addEventListener("click", function (e) { show(e.currentTarget); });
    rows[i].addEventListener("keydown", function (e) {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); show(e.currentTarget); }
    });
  }
})();
"""


def _script_json(value: Any) -> str:
    """JSON safe inside a <script> element: no ``</script>``, no ``<!--``, no HTML entities."""
    text = json.dumps(value, ensure_ascii=False, default=repr)
    return (
        text.replace("&", "\\u0026")
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def round_tick_ms(total_ms: float, most: int = 6) -> float:
    """A round step for the time axis (1, 2 or 5 times a power of ten, in ms) giving at most
    ``most`` intervals over ``total_ms``: 0, 100, 200 ms, never 0, 94, 187."""
    if not total_ms > 0:
        return 1.0
    raw = total_ms / most
    power = 10.0 ** math.floor(math.log10(raw))
    for factor in (1.0, 2.0, 5.0, 10.0):
        if factor * power >= raw:
            return factor * power
    return 10.0 * power


def _start_s(record: Record) -> float:
    return float(record.get("ts") or 0.0) - float(record.get("duration_ms") or 0.0) / 1000.0


def _tree_order(records: Sequence[Record]) -> list[tuple[Record, int]]:
    """Records depth-first (children under their parent, in start order) with their depth."""
    by_id = {r.get("span_id"): r for r in records}
    children: dict[Any, list[Record]] = {}
    roots: list[Record] = []
    for record in records:
        parent = record.get("parent_span_id")
        if parent in by_id and parent != record.get("span_id"):
            children.setdefault(parent, []).append(record)
        else:
            roots.append(record)
    out: list[tuple[Record, int]] = []
    seen: set[int] = set()
    stack = [(r, 0) for r in reversed(roots)]
    while stack:
        record, depth = stack.pop()
        if id(record) in seen:
            continue
        seen.add(id(record))
        out.append((record, depth))
        for child in reversed(children.get(record.get("span_id"), [])):
            stack.append((child, depth + 1))
    # Spans caught in a parent cycle (a corrupt log) are still shown, at the top level.
    out.extend((r, 0) for r in records if id(r) not in seen)
    return out


def _log_row(log: Record, index: int, depth: int, left: float) -> str:
    """A captured log line as a waterfall row: a tick at its time, the line beside it."""
    esc = html.escape
    left = min(max(left, 0.0), 99.5)
    text_pos = f"left:{left + 0.6:.3f}%" if left < 60 else f"right:{100 - left + 0.6:.3f}%"
    warn = " warn" if int(log.get("levelno") or 0) >= 30 else ""
    return (
        f'<div class="row" tabindex="0" data-index="{index}" data-type="t-log">'
        f'<div class="label" style="padding-left:{8 + 14 * min(depth, 12)}px">'
        f'<span class="step">·</span>log <b>{esc(str(log["level"]))}</b> {esc(str(log["logger"]))}</div>'
        f'<div class="track"><div class="bar t-log{warn}" style="left:{left:.3f}%;width:0.4%"></div>'
        f'<span class="bar-text" style="{text_pos}">{esc(log_line(log)[:300])}</span></div></div>'
    )


def render_html(run: Run, records: Sequence[Record] | None = None, logs: Sequence[Record] = ()) -> str:
    """The page for ``run`` as a string (``records`` default to ``run.records()``).

    ``logs``: the run's captured log lines (``run_logs``), shown as rows inside their span.
    """
    records = list(run.records() if records is None else records)
    esc = html.escape
    if records:
        origin = min(_start_s(r) for r in records)
        end = max(float(r.get("ts") or 0.0) for r in records)
    else:
        origin = end = 0.0
    total_s = max(end - origin, 1e-6)

    rows: list[str] = []
    spans: list[dict[str, Any]] = []
    for index, (record, depth) in enumerate(tree_with_logs(_tree_order(records), logs)):
        kind = str(record.get("type"))
        if kind == "log":
            rows.append(_log_row(record, index, depth, 100.0 * (record["ts"] - origin) / total_s))
            spans.append({"title": f"log {record['level']} {record['logger']}", "attributes": record})
            continue
        css = _TYPE_CLASSES.get(kind, "t-span")
        failed = record.get("status") == "error"
        duration = float(record.get("duration_ms") or 0.0)
        left = 100.0 * (_start_s(record) - origin) / total_s
        width = 100.0 * duration / 1000.0 / total_s
        step = record.get("step")
        label = with_agent(span_label(record), record)
        handoff = handoff_text(record)
        tokens = token_text(record)
        text = " · ".join(
            part
            for part in (
                format_ms(duration),
                tokens,
                "✕ " + str(record.get("error_type") or "error") if failed else "",
            )
            if part
        )
        # The bar's text sits right of the bar; inside it when the bar is wide and reaches the
        # right edge; else left of it.
        if left + width < 75:
            text_class, text_pos = "bar-text", f"left:{left + width:.3f}%"
        elif width >= 25:
            text_class, text_pos = "bar-text inside", f"left:{left:.3f}%"
        else:
            text_class, text_pos = "bar-text", f"right:{100 - left:.3f}%"
        step_text = f"#{step}" if step is not None else "·"
        error_attr = ' data-error="1"' if failed else ""
        rows.append(
            f'<div class="row" tabindex="0" data-index="{index}" data-type="{esc(css)}"'
            f"{error_attr}>"
            f'<div class="label" style="padding-left:{8 + 14 * min(depth, 12)}px">'
            f'<span class="step">{esc(step_text)}</span>{esc(kind)} '
            f"<b>{esc(label)}</b>{' <span class=err>✕</span>' if failed else ''}"
            + (
                f' <span class="handoff">handoff → {esc(handoff.split(" → ", 1)[1])}</span>'
                if handoff
                else ""
            )
            + "</div>"
            f'<div class="track"><div class="bar {css}{" error" if failed else ""}" '
            f'style="left:{left:.3f}%;width:{width:.3f}%"></div>'
            f'<span class="{text_class}" style="{text_pos}">{esc(text)}</span></div></div>'
        )
        attributes = {k: v for k, v in record.items() if k not in _CONTENT_FIELDS}
        acting = record.get("acting_agent")
        spans.append(
            {
                "title": f"{step_text} {kind} {label}"
                + (f" · agent {acting}" if type(acting) is str and kind not in ("agent_step", "run") else "")
                + (f" · handoff {handoff}" if handoff else ""),
                "attributes": attributes,
                "input": record.get("input"),
                "output": record.get("output"),
                "system": record.get("system_instructions"),
                "raised_at": where_text(record.get("error_where")),
                "transcript": [turn.to_dict() for turn in turns] if (turns := transcript(record)) else None,
                "stack": record.get("error_stack"),
            }
        )

    ticks = []
    tick_ms = round_tick_ms(total_s * 1000.0)
    count = int(total_s * 1000.0 / tick_ms + 1e-9)
    for i in range(count + 1):
        at = 100.0 * i * tick_ms / (total_s * 1000.0)
        cls = " first" if i == 0 else " last" if at > 90 else ""
        ticks.append(f'<span class="tick{cls}" style="left:{at:.3f}%">{esc(format_ms(i * tick_ms))}</span>')
    legend = (
        "".join(
            f'<span><i class="{css}"></i>{esc(kind)}</span>'
            for kind, css in [*_TYPE_CLASSES.items(), ("other span", "t-span")]
        )
        + '<span><i class="t-tool_call" style="outline:2px solid #d70015"></i>error</span>'
    )
    meta = [
        ("agent", run.agent or "-"),
        *([("agents", agents_line(run.agents, records))] if len(run.agents) > 1 else []),
        ("release", run.release or "-"),
        ("stop reason", run.stop_reason),
        ("duration", format_ms(run.duration_ms)),
        ("steps", str(run.total_steps)),
        (
            "tokens",
            (
                ("≥" if run.llm_calls_without_usage else "")
                + f"{run.input_tokens:,} in"
                + (f" (incl. {run.cache_read_input_tokens:,} cached)" if run.cache_read_input_tokens else "")
                + f" / {run.output_tokens:,} out"
                if run.known_total_tokens is not None
                else "—"
            )
            + (
                f" ({run.llm_calls_without_usage} model call(s) reported no usage: unknown, not counted)"
                if run.llm_calls_without_usage
                else ""
            ),
        ),
        ("errors", str(run.error_count)),
        ("started", run.started_at.isoformat()),
    ]
    script_hash = base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()
    csp = (
        "default-src 'none'; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{script_hash}'; img-src data:; base-uri 'none'; form-action 'none'"
    )
    return "\n".join(
        [
            "<!doctype html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{esc(csp)}">',
            f"<title>steptrace run {esc(run.run_id)}</title>",
            f"<style>{_STYLE}</style></head><body>",
            f"<h1>Run {esc(run.run_id)}</h1>",
            '<div class="meta">' + " · ".join(f"{esc(k)} <b>{esc(v)}</b>" for k, v in meta) + "</div>",
            f'<div class="legend">{legend}</div>',
            '<div class="waterfall" id="waterfall">',
            f'<div class="axis"><div class="label">span</div><div class="track">{"".join(ticks)}</div></div>',
            *rows,
            "</div>",
            '<div id="detail"><span class="hint">Click a span to see its attributes and '
            "captured input/output.</span></div>",
            f'<script id="steptrace-data" type="application/json">{_script_json({"spans": spans})}</script>',
            f"<script>{_SCRIPT}</script>",
            "</body></html>",
        ]
    )


def write_html(run: Run, path: str | Path, logs: Sequence[Record] = ()) -> Path:
    """Write the page for ``run`` (with its captured log lines ``logs``) to ``path``; the path."""
    out = Path(path)
    out.write_text(render_html(run, logs=logs), encoding="utf-8")
    return out

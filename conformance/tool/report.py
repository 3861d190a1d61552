"""Item results and the three report forms: JSON (a stable schema), JUnit XML (a vendor's CI) and one
self-contained HTML page (no external assets, so it can be mailed to a customer).

JSON schema: ``{"tool", "version", "edition", "target": {...}, "items": [{"number", "name", "result",
"detail", "evidence"}], "summary": {"pass", "fail", "skip", "manual"}}``; ``evidence`` is a list of
strings (the messages or packets that broke the item), empty when there is nothing to show.
"""

from __future__ import annotations

import enum
import html
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TOOL = "gb28181-conformance"
VERSION = "0.1.0"


class Outcome(enum.StrEnum):
    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"
    MANUAL = "manual"


@dataclass(slots=True)
class ItemResult:
    number: int
    name: str
    result: Outcome
    detail: str
    evidence: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(slots=True)
class Report:
    edition: str
    target: dict[str, Any]
    items: list[ItemResult] = field(default_factory=list)

    @property
    def summary(self) -> dict[str, int]:
        return {outcome.value: sum(1 for i in self.items if i.result is outcome) for outcome in Outcome}

    @property
    def failed(self) -> bool:
        return any(i.result is Outcome.FAIL for i in self.items)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tool": TOOL,
            "version": VERSION,
            "edition": self.edition,
            "target": self.target,
            "items": [
                {"number": i.number, "name": i.name, "result": i.result.value, "detail": i.detail,
                 "evidence": i.evidence}
                for i in self.items
            ],
            "summary": self.summary,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=2)

    def to_junit(self) -> str:
        summary = self.summary
        suite = ET.Element("testsuite", name=f"{TOOL} {self.target.get('mode', '')} {self.edition}".strip(),
                           tests=str(len(self.items)), failures=str(summary["fail"]),
                           skipped=str(summary["skip"] + summary["manual"]), errors="0")
        for item in self.items:
            case = ET.SubElement(suite, "testcase", classname=f"gb28181.{self.edition}",
                                 name=f"#{item.number} {item.name}", time=f"{item.seconds:.3f}")
            if item.result is Outcome.FAIL:
                failure = ET.SubElement(case, "failure", message=item.detail)
                failure.text = "\n\n".join(item.evidence)
            elif item.result in (Outcome.SKIP, Outcome.MANUAL):
                ET.SubElement(case, "skipped", message=f"{item.result.value}: {item.detail}")
            elif item.evidence:
                ET.SubElement(case, "system-out").text = "\n\n".join(item.evidence)
        ET.indent(suite)
        return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"

    def to_html(self) -> str:
        e = html.escape
        summary = self.summary
        target = "".join(f"<tr><th>{e(str(k))}</th><td>{e(str(v))}</td></tr>" for k, v in self.target.items())
        rows = []
        for item in self.items:
            evidence = "".join(f"<pre>{e(text)}</pre>" for text in item.evidence)
            rows.append(
                f'<tr class="{item.result.value}"><td>{item.number}</td><td>{e(item.name)}</td>'
                f'<td class="r">{item.result.value}</td><td>{e(item.detail)}{evidence}</td></tr>'
            )
        counts = " · ".join(f"{k} {v}" for k, v in summary.items())
        return f"""<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8">
<title>{TOOL} report</title>
<style>
body{{font-family:sans-serif;margin:2em;color:#222}} table{{border-collapse:collapse;width:100%}}
td,th{{border:1px solid #ccc;padding:.3em .5em;text-align:left;vertical-align:top}}
tr.pass .r{{background:#cfc}} tr.fail .r{{background:#fcc}} tr.skip .r{{background:#eee}}
tr.manual .r{{background:#ffc}} pre{{white-space:pre-wrap;font-size:.85em;background:#f6f6f6;padding:.4em}}
</style></head><body>
<h1>GB/T 28181-{e(self.edition)} conformance report</h1>
<p>{TOOL} {VERSION} · {e(counts)}</p>
<table class="target">{target}</table>
<h2>Items</h2>
<table><tr><th>#</th><th>item</th><th>result</th><th>detail and evidence</th></tr>
{"".join(rows)}
</table></body></html>
"""

    def write(self, path: Path) -> None:
        """By the file's suffix: .json, .xml (JUnit) or .html; ValueError for another."""
        suffix = path.suffix.lower()
        if suffix == ".json":
            text = self.to_json()
        elif suffix == ".xml":
            text = self.to_junit()
        elif suffix in (".html", ".htm"):
            text = self.to_html()
        else:
            raise ValueError(f"report {path}: the suffix must be .json, .xml or .html")
        path.write_text(text, encoding="utf-8")

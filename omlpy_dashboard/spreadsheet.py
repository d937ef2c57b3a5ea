"""Text made safe to open in a spreadsheet: the one rule every CSV and XLSX download follows.

Excel, LibreOffice and Google Sheets run a cell whose text starts with `=`, `+`, `-` or `@` as a formula (a
tab or carriage return in front is skipped before they look), so a value such as `=HYPERLINK(...)` in a
result or an audit entry could act when the file is opened. Such text gets a leading `'`, which spreadsheets
read as "this is text". Only text is changed: numbers are written as numbers by the callers and never pass
through here, so a negative number stays a number.
"""

from __future__ import annotations

FORMULA_TRIGGERS = frozenset({"=", "+", "-", "@", "\t", "\r"})


def formula_safe(text: str) -> str:
    """`text` with a leading `'` when a spreadsheet would run it, unchanged otherwise."""
    return "'" + text if text[:1] in FORMULA_TRIGGERS else text

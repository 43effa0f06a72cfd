"""Synapse table SQL over a materialised view (no routes, no emulator state): tokenising and
validating the user's query, rewriting it for the in-memory table ``T``, running it, and
encoding the answer the way Synapse does (synapse-views.md §2.3-2.5, §3, §5).

Accepted: one ``SELECT`` on ``synNNN[.v]`` with WHERE (=, <>, !=, <, >, IN, LIKE, IS NULL,
BETWEEN, AND/OR/NOT), GROUP BY, ORDER BY, LIMIT n [OFFSET m], aggregates and SQLite's scalar
functions. Rejected with 400: anything that is not a single SELECT, a second SELECT (sub-query),
joins, unions and unknown columns. String literals ``'synNNN'`` compared with an ENTITYID column
are read as entity ids. SQLite's own errors become 400s with a Synapse-like reason.
"""

from __future__ import annotations

import dataclasses
import re
import sqlite3

from .errors import BadRequest

TOKEN_RE = re.compile(r"""\s+|(?P<str>'(?:[^']|'')*')|(?P<qid>"(?:[^"]|"")*")|(?P<bq>`(?:[^`]|``)*`)
    |(?P<num>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+)|(?P<word>[A-Za-z_][A-Za-z0-9_]*)
    |(?P<op><>|!=|<=|>=|\|\||[=<>+\-*/%(),.;])""", re.X)
FORBIDDEN = {"JOIN", "UNION", "INTERSECT", "EXCEPT", "WITH", "INSERT", "UPDATE", "DELETE", "DROP",
             "CREATE", "ALTER", "ATTACH", "DETACH", "PRAGMA", "VACUUM", "REINDEX", "ANALYZE",
             "SAVEPOINT", "RELEASE", "BEGIN", "COMMIT", "ROLLBACK", "VALUES", "WINDOW", "OVER",
             "RECURSIVE", "INTO", "NATURAL", "USING"}
AFTER_TABLE = {"WHERE", "GROUP", "ORDER", "LIMIT", "HAVING"}
AGGREGATES = {"COUNT", "SUM", "AVG", "MIN", "MAX", "GROUP_CONCAT", "TOTAL"}
KEYWORDS = {"AND", "OR", "NOT", "IN", "IS", "NULL", "LIKE", "BETWEEN", "ESCAPE", "GLOB"}
SYN_RE = re.compile(r"^syn(\d+)$", re.I)
ROW_NAMES = ("ROW_ID", "ROW_VERSION", "ROW_ETAG")
PARSE_ERROR = "org.sagebionetworks.table.query.ParseException: "
# Worst-case bytes per cell, for maxRowsPerPage (TableModelUtils.calculateMaxRowSize, simplified).
MAX_BYTES_PER_PAGE = 2 * 1024 * 1024
TYPE_BYTES = {"BOOLEAN": 5, "LARGETEXT": 4000, "MEDIUMTEXT": 2000, "JSON": 4000}


@dataclasses.dataclass
class Token:
    kind: str     # str, qid, num, word, op
    text: str
    pos: int

    @property
    def upper(self) -> str:
        return self.text.upper() if self.kind == "word" else ""


@dataclasses.dataclass
class Parsed:
    sql: str
    table_id: int
    tokens: list[Token]          # without the trailing LIMIT/OFFSET
    limit: int | None
    offset: int | None
    aggregated: bool


def _error(message: str) -> BadRequest:
    return BadRequest(PARSE_ERROR + message)


def tokenize(sql: str) -> list[Token]:
    out, pos = [], 0
    while pos < len(sql):
        m = TOKEN_RE.match(sql, pos)
        if m is None or m.end() == pos:
            raise _error(f'Lexical error at line 1, column {pos + 1}.  Encountered: "{sql[pos]}"')
        kind = m.lastgroup
        if kind is not None:
            out.append(Token("qid" if kind == "bq" else kind, m.group(kind), pos))
        pos = m.end()
    return out


def _depths(tokens: list[Token]) -> list[int]:
    depth, out = 0, []
    for t in tokens:
        if t.text == ")" and t.kind == "op":
            depth -= 1
        out.append(depth)
        if t.text == "(" and t.kind == "op":
            depth += 1
    if depth != 0:
        raise _error("Encountered \"<EOF>\": unbalanced parentheses")
    return out


def parse(sql) -> Parsed:
    """Validate ``sql`` as a single SELECT on one ``synNNN`` (400 otherwise)."""
    if not isinstance(sql, str) or not sql.strip():
        raise BadRequest("query.sql is required.")
    tokens = tokenize(sql)
    while tokens and tokens[-1].text == ";":
        tokens.pop()
    if not tokens or tokens[0].upper != "SELECT":
        raise _error(f'Encountered "{tokens[0].text if tokens else "<EOF>"}" at line 1, '
                     'column 1. Was expecting: "SELECT"')
    depths = _depths(tokens)
    froms = []
    for i, t in enumerate(tokens):
        word = t.upper
        if t.text == ";":
            raise _error(f'Encountered ";" at line 1, column {t.pos + 1}.')
        if word == "SELECT" and i > 0:
            raise BadRequest("Sub-queries are not supported: a query may only select from a"
                             " single table or view")
        is_call = i + 1 < len(tokens) and tokens[i + 1].text == "("
        if word in FORBIDDEN and not is_call:
            raise BadRequest(f'Unsupported SQL: "{t.text}" (only a single SELECT on a single '
                             "table or view is allowed)")
        if word == "FROM" and depths[i] == 0:
            froms.append(i)
    if len(froms) != 1:
        raise _error('Encountered "<EOF>". Was expecting: "FROM"')
    at = froms[0] + 1
    table = tokens[at] if at < len(tokens) else None
    match = SYN_RE.match(table.text) if table is not None and table.kind == "word" else None
    if match is None:
        raise _error(f'Encountered "{table.text if table else "<EOF>"}" after FROM. '
                     'Was expecting: a Synapse id like "syn123"')
    end = at + 1
    if end < len(tokens) and tokens[end].kind == "num" and tokens[end].text.startswith("."):
        end += 1
    elif end + 1 < len(tokens) and tokens[end].text == "." and tokens[end + 1].kind == "num":
        end += 2
    if end < len(tokens) and tokens[end].upper not in AFTER_TABLE:
        if tokens[end].text == "," or tokens[end].upper == "JOIN":
            raise BadRequest("JOIN_NOT_SUPPORTED_IN_THIS_CONTEXT: a query may only select "
                             "from a single table or view")
        raise _error(f'Encountered "{tokens[end].text}" at line 1, column {tokens[end].pos + 1}.')
    tokens = tokens[:at] + [Token("table", "T", table.pos)] + tokens[end:]
    depths = _depths(tokens)
    limit = offset = None
    for i, t in enumerate(tokens):
        if t.upper == "LIMIT" and depths[i] == 0:
            rest = tokens[i + 1:]
            ok = (len(rest) in (1, 3) and rest[0].kind == "num" and rest[0].text.isdigit()
                  and (len(rest) == 1 or (rest[1].upper == "OFFSET" and rest[2].text.isdigit())))
            if not ok:
                raise _error(f'Encountered "{rest[0].text if rest else "<EOF>"}" after LIMIT.')
            limit = int(rest[0].text)
            offset = int(rest[2].text) if len(rest) == 3 else None
            tokens = tokens[:i]
            break
    select_end = froms[0]
    aggregated = tokens[1].upper == "DISTINCT" or any(
        t.upper == "GROUP" and depths[i] == 0 for i, t in enumerate(tokens)) or any(
        t.upper in AGGREGATES and i + 1 < select_end and tokens[i + 1].text == "("
        for i, t in enumerate(tokens[:select_end]))
    return Parsed(sql, int(match.group(1)), tokens, limit, offset, aggregated)


# ---- rewriting --------------------------------------------------------------------------
def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _ident(t: Token) -> str | None:
    if t.kind == "qid":
        return t.text[1:-1].replace('""', '"')
    if t.kind == "word" and t.upper not in KEYWORDS:
        return t.text
    return None


def build(parsed: Parsed, schema: list[dict], sort=None) -> str:
    """The SQL to run on ``T``: ``*`` expanded, row columns prepended (non-aggregate), entity
    id literals converted, sort items applied. Unknown quoted columns are a 400."""
    by_name = {m["name"].lower(): m for m in schema}
    known = set(by_name) | {n.lower() for n in ROW_NAMES}
    toks = list(parsed.tokens)
    out: list[str] = []
    for i, t in enumerate(toks):
        prev = toks[i - 1] if i else None
        nxt = toks[i + 1] if i + 1 < len(toks) else None
        if t.kind == "qid" and (prev is None or prev.upper != "AS"):
            name = _ident(t)
            if name.lower() not in known:
                raise BadRequest(f"Unknown column '{name}' in the query")
        if t.kind == "str" and SYN_RE.match(t.text[1:-1]):
            for back in reversed(toks[:i]):
                name = _ident(back)
                if name is not None:
                    model = by_name.get(name.lower())
                    if model is not None and model["columnType"] == "ENTITYID":
                        t = Token("num", SYN_RE.match(t.text[1:-1]).group(1), t.pos)
                    break
        if t.kind == "op" and t.text == "*" and prev is not None and \
                (prev.upper in ("SELECT", "DISTINCT", "ALL") or prev.text == ",") and \
                nxt is not None and (nxt.upper == "FROM" or nxt.text == ","):
            out.append(", ".join(_quote(m["name"]) for m in schema) or "NULL")
            continue
        out.append(t.text)
        if i == 0 and not parsed.aggregated:
            out.append("ROW_ID, ROW_VERSION, ROW_ETAG,")
    if sort:
        items = []
        for item in sort:
            col = item.get("column") if isinstance(item, dict) else None
            direction = str(item.get("direction") or "ASC").upper() if col else ""
            if col is None or col.lower() not in known or direction not in ("ASC", "DESC"):
                raise BadRequest(f"Invalid sort item: {item}")
            items.append(f"{_quote(col)} {direction}")
        words = [t.upper for t in toks]
        if "ORDER" in words:
            at = words.index("ORDER") + 2 + (1 if not parsed.aggregated else 0)
            out[at:at] = [", ".join(items) + ","]
        else:
            out.append("ORDER BY " + ", ".join(items))
    return _join(out)


def _join(parts: list[str]) -> str:
    """Tokens back to SQL text, spaced so an expression reads like ``COUNT(*)`` (SQLite names
    an unaliased result column after its text)."""
    text = ""
    for part in parts:
        tight = part in (")", ",") or text.endswith("(") or (
            part == "(" and text[-1:].isalnum() or part == "(" and text.endswith("_"))
        text += part if (tight or not text) else " " + part
    return text


# ---- running and encoding ------------------------------------------------------------------
def _translate(exc: sqlite3.Error) -> BadRequest:
    text = str(exc)
    m = re.match(r"no such column: (.+)", text)
    if m:
        return BadRequest(f"Unknown column '{m.group(1)}' in the query")
    m = re.match(r'near "(.*)": syntax error', text)
    if m:
        return _error(f'Encountered "{m.group(1)}". {text}')
    if text == "incomplete input":
        return _error('Encountered "<EOF>". The query ends unexpectedly.')
    return BadRequest(f"Invalid query: {text}")


def execute(conn: sqlite3.Connection, sql: str) -> tuple[list[str], list[tuple]]:
    try:
        cur = conn.execute(sql)
        rows = cur.fetchall()
    except sqlite3.Error as exc:
        raise _translate(exc) from None
    return [d[0] for d in cur.description], rows


def select_columns(names: list[str], rows: list[tuple], schema: list[dict]) -> list[dict]:
    """SelectColumn for each result column: the ColumnModel's id/type for a plain column, a
    type guessed from the values for an expression (null when every value is null)."""
    by_name = {m["name"]: m for m in schema}
    by_lower = {m["name"].lower(): m for m in schema}
    out = []
    for i, name in enumerate(names):
        model = by_name.get(name) or by_lower.get(name.lower())
        if model is not None:
            out.append({"name": model["name"], "columnType": model["columnType"],
                        "id": model["id"]})
            continue
        kinds = {type(r[i]) for r in rows if r[i] is not None}
        guess = ("INTEGER" if kinds == {int} else "DOUBLE" if kinds <= {int, float} and kinds
                 else "STRING" if kinds else None)
        out.append({"name": name, "columnType": guess})
    return out


def encode(ctype: str | None, value):
    """A cell as Synapse sends it: a string, or None (§2.4)."""
    if value is None:
        return None
    if ctype == "ENTITYID" and isinstance(value, int):
        return f"syn{value}"
    if ctype == "BOOLEAN":
        return "true" if value in (1, True, "true") else "false"
    if isinstance(value, float) and value.is_integer() and ctype != "DOUBLE":
        return str(int(value))
    return str(value)


def max_rows_per_page(headers: list[dict], schema: list[dict]) -> int:
    """max(1, 2 MiB / worst-case row size of the selected columns)."""
    by_id = {m["id"]: m for m in schema}
    size = 0
    for h in headers:
        model = by_id.get(h.get("id")) or {}
        ctype = h.get("columnType") or "STRING"
        if ctype in ("STRING", "LINK", "STRING_LIST"):
            each = 4 * (model.get("maximumSize") or 50)
        else:
            each = TYPE_BYTES.get(ctype.replace("_LIST", ""), 20)
        size += each * (model.get("maximumListLength") or 1 if ctype.endswith("_LIST") else 1)
    return max(1, MAX_BYTES_PER_PAGE // max(1, size))

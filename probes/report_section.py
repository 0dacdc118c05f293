"""What a probe contributes to report.md, declared as plain data on its class (`report = ProbeReport(...)`).

The report never imports a probe (it reads files only, without torch), so the bench records the declarations of the
probes it runs in the run directory (probe_reports.json, harness/results.py) and report/probe_sections.py renders
the sections that file declares. A declaration names the probe's numbers by the keys `measure` returns them under;
the report summarises them in tables. What a table cannot show, such as a figure, a probe asks of a renderer by name:
the functions of report/probe_renderers.py.
"""

from dataclasses import asdict, dataclass, field

ROWS = {
    "cell": "one row per language, variant and varying config field; mean±std over seeds",
    "variant": "one row per variant and varying config field; mean±std over languages and seeds",
    "field": "for each varying config field, one table by that field and variant; mean±std over languages and seeds",
    "seed": "one row per cell (every seed), the numbers as they are",
}


@dataclass(frozen=True)
class Table:
    """One table of a probe's numbers. `columns`: the keys of the numbers, in order (a key with `*` stands for every
    key of that shape, in sorted order, such as "probe_*_best"), or {key: column header}. `rows`: one of ROWS."""

    columns: list[str] | dict[str, str]
    rows: str = "cell"
    title: str = ""  # a ### heading above the table
    text: str = ""  # a paragraph under the heading: what the numbers mean
    csv: str = ""  # rows="seed" only: the whole table also goes into this file of the run directory

    def __post_init__(self):
        if not self.columns:
            raise ValueError("a report table needs columns")
        if self.rows not in ROWS:
            raise ValueError(f"report table rows {self.rows!r}: not one of {', '.join(ROWS)}")
        if self.csv and self.rows != "seed":
            raise ValueError("report table csv: only a table of rows='seed' is written to a file")


@dataclass(frozen=True)
class ProbeReport:
    """A probe's section of report.md: a ## title, a paragraph, its tables and the renderers it asks for by name
    (report/probe_renderers.py). `columns` is short for a first table of rows "cell"."""

    title: str
    text: str = ""
    columns: list[str] | dict[str, str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    renderers: list[str] = field(default_factory=list)

    def __post_init__(self):
        if not self.title:
            raise ValueError("a probe's report section needs a title")
        if not all(isinstance(table, Table) for table in self.tables):
            raise ValueError(f"report section {self.title!r}: its tables must be Table(...)")


def recorded_reports(classes) -> list[dict]:
    """The declarations of probe classes as the run directory records them: name, section (where the harness puts
    the probe's numbers in a row), needs_attention (the report says why other model kinds than the transformer are
    missing from its section) and the report section as JSON-able data, None for a probe that declares none."""
    return [{"name": cls.name, "section": cls.section, "needs_attention": cls.needs_attention,
             "report": None if cls.report is None else asdict(cls.report)} for cls in classes]

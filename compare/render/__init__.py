"""What renders: tables, reports, diffs, plots and the published page, all from saved results (plain data).
Nothing here starts a cell or imports a framework.

format.py spells every number and label; findings.py says what the intervals support; tables.py lays out
TableData; report.py holds the one print path (print_report) and the output formats (RENDERERS)."""

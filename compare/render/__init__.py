"""What renders: tables, reports, diffs, plots and the published page, all from saved results (plain data).
Nothing here starts a cell, imports a framework or imports compare.measure.

Bottom up (an arrow never points up): analysis.py decides what the figures support; format.py spells
numbers and labels and holds TableData; outputs.py is the table of output formats; tables, findings,
server and hostinfo lay out; report (and its print_report, shared with `compare`), diff, plot and publish
are the commands."""

"""What renders: tables, reports, diffs, plots and the published page, all from saved results (plain data).
Nothing here starts a cell or imports a framework."""

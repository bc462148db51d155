"""threadbench's framework-free core: runner, modes, statistics, tables and results I/O."""

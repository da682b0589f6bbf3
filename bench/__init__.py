"""Benchmarks of the hot paths (take, complete, sweep), each against a raw-SQL baseline measured in
the same run on the same PostgreSQL. Run `python -m bench [take|complete|sweep|all] [--quick]`;
see bench/README.md."""

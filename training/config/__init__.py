"""The command line's flags: one schema, what each flag feeds, and every check that needs no torch."""

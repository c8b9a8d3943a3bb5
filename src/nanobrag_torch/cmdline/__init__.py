"""The C programs' single-dash command lines: ``flags`` (the flag tables, the parser, the help text)."""

"""Service tests: the rules, without HTTP or sockets."""

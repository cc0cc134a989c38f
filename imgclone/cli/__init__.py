"""The command line: argparse, option rules, output, one module per subcommand; the only user of argparse."""

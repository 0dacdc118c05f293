"""The `satbench` command line (satbench/cli.py); `python -m satbench` runs it too."""

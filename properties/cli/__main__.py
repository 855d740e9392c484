"""``python -m properties.cli``: the same command as ``ida-verify``."""

import sys

try:
    from properties.cli.main import entry
except KeyboardInterrupt:  # Ctrl-C while importing numpy and friends
    sys.stderr.write("ida-verify: interrupted\n")
    sys.exit(130)

if __name__ == "__main__":  # pragma: no cover
    entry()
